# The bus streams of the plan (btcpipe/bus/port.py): market data in, features and predictions out, and the
# payloads a consumer could not decode (dead-letters).
locals {
  streams = toset(["market-sbe-trade", "market-sbe-bestbidask", "market-sbe-depth", "market-heartbeat", "features-1s", "predictions-1s", "dead-letters"])
  market_streams = ["market-sbe-trade", "market-sbe-bestbidask", "market-sbe-depth", "market-heartbeat"]
}

resource "aws_kinesis_stream" "bus" {
  for_each         = local.streams
  name             = "btcpipe-${var.environment}-${each.key}"
  retention_period = 24
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.btcpipe.arn

  # One symbol's records stay in one shard (partition key = symbol); on-demand scales shards with the load.
  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}
