"""``btcpipe cluster``: a local multi-node Ray cluster on loopback for ``--engine ray``."""

from __future__ import annotations

import sys

import click

from btcpipe.domain.errors import BtcpipeError

EXIT_FAILED = 1


@click.group("cluster")
def cli() -> None:
    """Start and stop a Ray cluster of several nodes on this machine's loopback addresses."""


@cli.command("up")
@click.option("--nodes", type=click.IntRange(min=1), default=2, show_default=True,
              help="Nodes: the head and nodes − 1 workers, each on its own loopback address.")
@click.option("--head-ip", default="127.0.0.2", show_default=True,
              help="The head's address; workers take the next ones (127.0.0.1 is not allowed: Ray rewrites it).")
@click.option("--port", type=click.IntRange(1024, 65535), default=6390, show_default=True, help="The head's GCS port.")
@click.option("--cpus-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs each node offers to tasks.")
def up(nodes: int, head_ip: str, port: int, cpus_per_node: int) -> None:
    """Start the cluster and print how to use it."""
    from btcpipe.engines import ray_cluster

    try:
        cluster = ray_cluster.loopback_cluster(nodes, head_ip=head_ip, port=port)
        ray_cluster.start(cluster, cpus_per_node=cpus_per_node)
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    nodes_text = ", ".join(cluster.node_ips)
    click.echo(f"ray cluster up: {len(cluster.node_ips)} node(s) on {nodes_text}; head {cluster.address}")
    click.echo(f"use it:  RAY_AUTH_MODE=token btcpipe features build --engine ray --ray-address {cluster.address} …")


@cli.command("down")
def down() -> None:
    """Stop every Ray process on this machine (the cluster's nodes and their workers)."""
    from btcpipe.engines import ray_cluster

    try:
        ray_cluster.stop()
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo("ray cluster down")
