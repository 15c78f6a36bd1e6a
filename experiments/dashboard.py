"""Create the reward-ablation dashboard in W&B, defined as code (wandb-workspaces): `make dashboard`.

    pip install -e ".[dashboard]"; wandb login
    python experiments/dashboard.py entity=TEAM [project=lego-arta] [group=reward_ablation]

Sections: the reward curves (total and per reward, runs grouped by reward variant, mean with a min-max band), what
moved GRPO's advantage (groups with equal rewards, per reward the groups in which it varies, answers on the grid,
entropy, clipped ratio), the training signals (KL, completion length, loss) and the evaluation metrics per method.
Runs are filtered to the experiment's W&B group, so one sweep is one dashboard.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch
from lego_arta.errors import UserError
from lego_arta.rewards import REWARDS
from lego_arta.sample_metrics import STUDY_METRICS

# W&B keys from the registries: TRL logs rewards/<__name__>/mean per reward, evaluation eval/<metric>
REWARD_NAMES = [*REWARDS, "grounding_semantic"]  # the registry and the semantic reward (configured with its encoder)
REWARD_KEYS = ["train/reward", *(f"train/rewards/{name}/mean" for name in REWARD_NAMES)]
TRAINING_KEYS = ["train/kl", "train/completions/mean_length", "train/loss", "train/learning_rate"]  # TRL's own
# GRPO's signal: TRL's share of groups with equal summed rewards, entropy and clipped ratio; the share of groups in
# which each reward varies (lego_arta.methods.grpo) and of box answers on the grid (the IoU rewards)
SIGNAL_KEYS = [
    "train/frac_reward_zero_std",
    *(f"train/rewards/{name}/frac_varying_groups" for name in REWARD_NAMES),
    "train/frame/grid_share",
    "train/iou/matched",
    "train/entropy",
    "train/clip_ratio/region_mean",
]
EVAL_KEYS = [f"eval/{key}" for key in STUDY_METRICS]


def build_workspace(entity: str, project: str, group: str) -> Any:
    """The workspace object (nothing is sent until ``.save()``)."""
    import wandb_workspaces.reports.v2 as reports
    import wandb_workspaces.workspaces as workspaces

    def curve(key: str, by: str) -> Any:
        return reports.LinePlot(
            title=key.removeprefix("train/").removesuffix("/mean"),
            x="train/global_step",
            y=[key],
            groupby=f"config.{by}",
            groupby_aggfunc="mean",
            groupby_rangefunc="minmax",
            smoothing_factor=0.6,
        )

    return workspaces.Workspace(
        name=f"lego-arta: {group}",
        entity=entity,
        project=project,
        sections=[
            workspaces.Section(
                name="Reward curves (by reward variant)",
                panels=[curve(k, "reward.name") for k in REWARD_KEYS],
                is_open=True,
            ),
            workspaces.Section(
                name="What moved the advantage", panels=[curve(k, "reward.name") for k in SIGNAL_KEYS], is_open=True
            ),
            workspaces.Section(
                name="Training signals", panels=[curve(k, "reward.name") for k in TRAINING_KEYS], is_open=True
            ),
            workspaces.Section(
                name="Evaluation (by method)",
                panels=[
                    reports.BarPlot(title=k.removeprefix("eval/"), metrics=[k], groupby="config.method.name")
                    for k in EVAL_KEYS
                ],
                is_open=True,
            ),
        ],
        runset_settings=workspaces.RunsetSettings(
            filters=f"Group = '{group}'", groupby=[workspaces.Config("reward.name")]
        ),
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="dashboard")
@hydra_task
def main(cfg: DictConfig) -> None:
    import wandb

    try:
        workspace = build_workspace(cfg.entity, cfg.project, cfg.group).save()
    except wandb.errors.UsageError as err:  # no API key: the user's setup, not a bug
        raise UserError(f"W&B: {err} (the dashboard is created online: wandb login, or set WANDB_API_KEY)") from err
    print(f"dashboard: {workspace.url}")


if __name__ == "__main__":
    launch(main, "dashboard")
