"""Training the MLP (torch, CPU): in → 64 → 32 → 1, ReLU, Dropout 0.1, Huber loss, Adam, early stopping.

Seeded and reproducible: torch's and numpy's generators are seeded, deterministic algorithms are on and
torch runs on one thread during training (restored afterwards). Labels are divided by their training
std so the Huber threshold means "one std" whatever the return scale; the scale is a buffer of the
network, so the exported model outputs log returns directly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.model.dataset import TimeSplit
from btcpipe.model.progress import EpochStats, SilentReporter, TrainingReporter
from btcpipe.model.scaler import StandardScaler

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training hyper-parameters: seed, epochs, patience, batch, learning rate, decay, layers, dropout, Huber δ."""

    seed: int = 0
    max_epochs: int = 40
    patience: int = 5  # epochs without a better validation loss before stopping
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    huber_delta: float = 1.0  # in units of the training label std

    def __post_init__(self) -> None:
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ConfigError("max_epochs, patience and batch_size must be positive")
        if not 0.0 <= self.dropout < 1.0 or self.learning_rate <= 0 or self.huber_delta <= 0:
            raise ConfigError("dropout must be in [0, 1); learning_rate and huber_delta positive")

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["hidden"] = list(self.hidden)
        return doc


@dataclass
class TrainedModel:
    """A trained network with its scaler and training history."""

    network: Any  # torch.nn.Module in eval mode: float32 scaled features [N, F] → log return [N]
    scaler: StandardScaler
    config: TrainConfig
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    label_scale: float = 1.0
    seconds: float = 0.0

    def predict(self, features: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Raw feature rows [N, F] → predicted log returns (the torch reference for the ONNX export)."""
        import torch

        x = torch.from_numpy(self.scaler.transform(features))
        with torch.no_grad():
            out: np.ndarray[Any, np.dtype[np.float64]] = self.network(x).numpy().astype(np.float64)
        return out


def build_network(n_features: int, config: TrainConfig, label_scale: float = 1.0) -> torch.nn.Module:
    import torch
    from torch import nn

    class ReturnMLP(nn.Module):
        """The MLP in → 64 → 32 → 1 with ReLU and dropout."""

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width = n_features
            for hidden in config.hidden:
                layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
                width = hidden
            layers.append(nn.Linear(width, 1))
            self.body = nn.Sequential(*layers)
            self.register_buffer("label_scale", torch.tensor(label_scale, dtype=torch.float32))

        def standardized(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.body(x).squeeze(-1)
            return out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale: torch.Tensor = self.get_buffer("label_scale")
            return self.standardized(x) * scale

    return ReturnMLP()


@contextmanager
def _deterministic_torch(seed: int) -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def train_mlp(
    split: TimeSplit, config: TrainConfig | None = None, *, reporter: TrainingReporter | None = None
) -> TrainedModel:
    """Fit the scaler on train only, train with early stopping on val, and keep the best epoch's weights."""
    import torch

    config = config or TrainConfig()
    reporter = reporter or SilentReporter()
    train, val = split.train, split.val
    if len(train) < 2 or len(val) < 1:
        raise DataError(f"too few rows to train: train={len(train)} val={len(val)}")
    scaler = StandardScaler.fit(train.features, train.feature_names)
    label_scale = float(np.std(train.y))
    if not np.isfinite(label_scale) or label_scale <= 0.0:
        raise DataError("training labels are constant; there is nothing to learn")
    started = time.perf_counter()
    with _deterministic_torch(config.seed):
        x_train = torch.from_numpy(scaler.transform(train.features))
        y_train = torch.from_numpy((train.y / label_scale).astype(np.float32))
        x_val = torch.from_numpy(scaler.transform(val.features))
        y_val = torch.from_numpy((val.y / label_scale).astype(np.float32))
        network: Any = build_network(len(train.feature_names), config, label_scale)
        optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        loss_fn = torch.nn.HuberLoss(delta=config.huber_delta)
        order_gen = torch.Generator().manual_seed(config.seed)
        best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(network.state_dict())
        history: list[EpochStats] = []
        stopped_early = False
        reporter.start(config.max_epochs)
        try:
            for epoch in range(1, config.max_epochs + 1):
                t0 = time.perf_counter()
                network.train()
                order = torch.randperm(len(x_train), generator=order_gen)
                total, count = 0.0, 0
                for start in range(0, len(order), config.batch_size):
                    idx = order[start : start + config.batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(network.standardized(x_train[idx]), y_train[idx])
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                val_loss = _eval_loss(network, loss_fn, x_val, y_val)
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(network.state_dict())
                stats = EpochStats(epoch, total / count, val_loss, best_epoch, time.perf_counter() - t0)
                history.append(stats)
                reporter.epoch(stats)
                if epoch - best_epoch >= config.patience:
                    stopped_early = True
                    break
        finally:
            reporter.finish(stopped_early)
        network.load_state_dict(best_state)
        network.eval()
    return TrainedModel(
        network=network, scaler=scaler, config=config, history=history, best_epoch=best_epoch,
        stopped_early=stopped_early, label_scale=label_scale, seconds=time.perf_counter() - started,
    )


def _eval_loss(network: Any, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, chunk: int = 65536) -> float:
    import torch

    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            part = slice(start, start + chunk)
            total += float(loss_fn(network.standardized(x[part]), y[part])) * len(y[part])
    return total / len(y)
