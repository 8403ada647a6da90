"""One optimisation step of the ``landmarks`` stage: the predictor learns to place 68 points on
masked faces."""

from __future__ import annotations

from lafin import losses
from lafin.data.batches import Batch
from lafin.training.config import TrainConfig
from lafin.training.stage_networks import StageNetworks


class LandmarkStage:
    """Updates the predictor on its point error (``landmark_norm``, ``landmark_wing``), then its
    moving average."""

    def __init__(self, config: TrainConfig, networks: StageNetworks, size: int) -> None:
        self.config = config
        self.networks = networks
        self.size = size

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.config.loss
        net = self.networks.nets["landmarks"]
        net.train()
        pred = net(batch.masked).view(-1, 68, 2) * self.size
        loss = losses.landmark_error(pred, batch.landmarks, self.size, cfg.landmark_norm, cfg.landmark_wing)
        optim = self.networks.optims["landmarks"]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        self.networks.update_ema(step)
        return {"loss/landmarks": loss.item()}
