"""The model zoo: one rule for settings, one cache key per recipe, the catalogue and the command line."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigc_lib import zoo
from aigc_lib.models.gpt import GPTConfig
from aigc_lib.training.gan import GANTrainConfig
from aigc_lib.training.lm import LMTrainConfig
from aigc_lib.zoo.diffusion import DiffusionTraining

VARIANTS = {zoo.RingGAN: zoo.RING_KINDS, zoo.MNISTGAN: zoo.GAN_KINDS, zoo.MNISTVAE: ("mlp", "conv"),
            zoo.FakeDetector: zoo.FAMILIES, zoo.PoemGPT: zoo.FINETUNE_METHODS,
            zoo.ArithmeticSFT: ("direct", "worked")}
EVERY_RECIPE = [(cls, v) for cls in zoo.RECIPES for v in VARIANTS.get(cls, (None,))]


def make(cls, variant=None):
    return cls() if variant is None else cls(**{cls.variant: variant})


def ids(case):
    cls, variant = case
    return cls.__name__ if variant is None else f"{cls.__name__}-{variant}"


def nested_configs(recipe):
    return {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)
            if dataclasses.is_dataclass(getattr(recipe, f.name))}


def test_every_variant_recipe_has_its_variants_listed_here():
    assert {cls for cls in zoo.RECIPES if cls.variant} == set(VARIANTS)
    assert len({cls.name for cls in zoo.RECIPES}) == len(zoo.RECIPES)  # one cache name per recipe


# ----------------------------------------------------------------------------- the replace rule
def test_replace_sets_a_top_level_field_and_leaves_the_original():
    recipe = zoo.Classifier()
    changed = recipe.replace(epochs=1, lr=1e-3)
    assert (changed.epochs, changed.lr) == (1, 1e-3) and isinstance(changed, zoo.Classifier)
    assert recipe.epochs != 1 and recipe.lr == 2e-3  # a copy: the original is unchanged
    assert recipe.replace() == recipe


def test_replace_sets_a_nested_field():
    recipe = zoo.ShakespeareGPT()
    changed = recipe.replace(n_layer=2, steps=500, sample_chars=100)
    assert changed.model == dataclasses.replace(recipe.model, n_layer=2)
    assert changed.train == dataclasses.replace(recipe.train, steps=500)
    assert changed.sample_chars == 100
    assert isinstance(changed.model, GPTConfig) and isinstance(changed.train, LMTrainConfig)
    assert recipe.model.n_layer == 4 and recipe.train.steps == 2000  # the original is unchanged
    ring = zoo.RingGAN().replace(n=500, lr_g=5e-4)  # a field of `data` and one of `train`
    assert ring.data.n == 500 and ring.train.lr_g == 5e-4 and ring.train.lr_d == 1e-3


def test_a_shared_field_sets_every_config_that_has_it():
    recipe = zoo.ShakespeareGPT().replace(block_size=32)
    assert recipe.model.block_size == recipe.train.block_size == 32
    small = zoo.SmallTextGPT().replace(block_size=16)
    assert small.model.block_size == small.train.block_size == 16


def test_a_nested_config_validates_all_its_overrides_together():
    """``steps=10`` alone breaks the warm-up of 100 steps; with ``warmup_steps=5`` it is valid, in any order."""
    for overrides in (dict(steps=10, warmup_steps=5), dict(warmup_steps=5, steps=10)):
        train = zoo.ShakespeareGPT().replace(**overrides).train
        assert (train.steps, train.warmup_steps) == (10, 5)
    with pytest.raises(ValueError, match="warmup_steps"):
        zoo.ShakespeareGPT().replace(steps=10)


@pytest.mark.parametrize("case", EVERY_RECIPE, ids=ids)
def test_an_unknown_setting_names_every_setting(case):
    recipe = make(*case)
    with pytest.raises(ValueError, match="unknown setting 'no_such_setting'") as err:
        recipe.replace(no_such_setting=1)
    message = str(err.value)
    assert recipe.cache_name in message and "choose from" in message
    nested = nested_configs(recipe)
    top = [f.name for f in dataclasses.fields(recipe) if f.name not in nested]
    inner = [f.name for config in nested.values() for f in dataclasses.fields(config)]
    for name in top + inner:
        assert repr(name) in message, name


def test_an_old_style_name_is_an_error_not_a_silent_no_op():
    with pytest.raises(ValueError, match="unknown setting 'n_layers'.*'n_layer'"):
        zoo.ShakespeareGPT().replace(n_layers=3)
    with pytest.raises(ValueError, match="unknown setting 'n'"):
        zoo.MNISTGAN().replace(n=100)  # the ring recipes have data.n; the MNIST GAN has none


@pytest.mark.parametrize("cls, other", [(zoo.MNISTGAN, "mlp"), (zoo.RingGAN, "pacgan"), (zoo.MNISTVAE, "conv"),
                                        (zoo.FakeDetector, "VAE")])
def test_the_variant_picks_the_defaults_and_cannot_be_replaced(cls, other):
    recipe = cls()
    with pytest.raises(ValueError, match="picks the defaults") as err:
        recipe.replace(**{cls.variant: other})
    assert f"{cls.__name__}({cls.variant}={other!r})" in str(err.value)  # says what to write instead
    assert recipe.replace(**{cls.variant: getattr(recipe, cls.variant)}) == recipe  # the same value is fine


def test_the_variant_sets_the_other_defaults():
    assert zoo.MNISTGAN(kind="mlp").train.steps != zoo.MNISTGAN(kind="dcgan").train.steps
    assert zoo.MNISTGAN(kind="mlp").train.snapshot_every == 0
    assert zoo.RingGAN(kind="wgan-gp").train.n_critic == 5 and zoo.RingGAN().train.n_critic == 1
    assert zoo.MNISTVAE(arch="conv").model.arch == "conv"


@pytest.mark.parametrize("case", EVERY_RECIPE, ids=ids)
def test_seed_reaches_the_training_seed(case):
    recipe = make(*case)
    seeded = recipe.replace(seed=7)
    if isinstance(getattr(recipe, "train", None), (LMTrainConfig, GANTrainConfig, DiffusionTraining)):
        assert "seed" not in {f.name for f in dataclasses.fields(recipe)}
        assert seeded.train.seed == 7 and recipe.train.seed == 0
    else:
        assert seeded.seed == 7 and recipe.seed == 0
    assert seeded.checkpoint_path() != recipe.checkpoint_path()
    if isinstance(recipe, zoo.DistilledGPT):
        assert seeded.teacher_recipe == recipe.teacher_recipe  # the student's seed, not the teacher's


def test_zoo_functions_apply_overrides_by_the_same_rule():
    with pytest.raises(ValueError, match="unknown setting 'n_layers'"):
        zoo.shakespeare_gpt(progress=False, n_layers=2)
    with pytest.raises(ValueError, match="unknown setting 'z_dims'.*'z_dim'"):
        zoo.mnist_vae("conv", progress=False, z_dims=2)
    with pytest.raises(ValueError, match="kind must be one of"):
        zoo.ring_gan("lsgan", progress=False)


# ----------------------------------------------------------------------------- to_dict, from_dict and the key
@pytest.mark.parametrize("case", EVERY_RECIPE, ids=ids)
def test_to_dict_from_dict_round_trip(case):
    cls, _ = case
    recipe = make(*case)
    d = recipe.to_dict()
    assert cls.from_dict(d) == recipe
    through_json = cls.from_dict(json.loads(json.dumps(d)))  # lists for tuples, as a cache key would hold them
    assert through_json == recipe
    assert through_json.checkpoint_path() == recipe.checkpoint_path()
    for name, config in nested_configs(recipe).items():
        assert type(getattr(through_json, name)) is type(config)


def test_from_dict_keeps_settings_that_differ_from_the_defaults():
    recipe = zoo.RingGAN(kind="pacgan").replace(n=300, seed=2, betas=(0.4, 0.8))
    back = zoo.RingGAN.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert back == recipe and back.train.betas == (0.4, 0.8) and back.data.n == 300


@pytest.mark.parametrize("case", EVERY_RECIPE, ids=ids)
def test_the_cache_key_changes_with_a_setting_and_only_then(case):
    recipe = make(*case)
    path = recipe.checkpoint_path()
    assert path == make(*case).checkpoint_path() == recipe.replace().checkpoint_path()
    assert path.name.startswith(recipe.cache_name + "-") and path.suffix == ".pt"
    names = {f.name for f in dataclasses.fields(recipe)}
    field = next(n for n in ("batch_size", "hidden", "sample_chars", "probes", "T", "r", "n", "n_pairs", "threads", "n_pool")
                 if n in names)
    value = getattr(recipe, field)
    assert recipe.replace(**{field: value}).checkpoint_path() == path  # the same value: the same model
    assert recipe.replace(**{field: value * 2 + 1}).checkpoint_path() != path


def test_the_cache_key_covers_nested_settings_variants_and_sources():
    gpt = zoo.ShakespeareGPT()
    assert gpt.replace(n_embd=64).checkpoint_path() != gpt.checkpoint_path()
    assert gpt.replace(eval_batches=3).checkpoint_path() != gpt.checkpoint_path()
    paths = {zoo.RingGAN(kind=k).checkpoint_path() for k in zoo.RING_KINDS}
    assert len(paths) == len(zoo.RING_KINDS)
    assert zoo.MNISTGAN(kind="cdcgan").cache_name == "mnist-gan-cdcgan"
    # a detector is retrained when the generator it learned to spot changes
    assert zoo.FakeDetector(family="VAE").to_dict()["generator"] == zoo.MNISTVAE().to_dict()
    student = zoo.DistilledGPT()
    other_teacher = dataclasses.replace(student, teacher_recipe=zoo.ShakespeareGPT().replace(steps=1000))
    assert other_teacher.checkpoint_path() != student.checkpoint_path()


def test_the_cache_key_follows_the_profile_and_the_seed_offset(monkeypatch):
    path = zoo.Classifier().checkpoint_path()
    monkeypatch.setenv("AIGC_SEED_OFFSET", "1")
    assert zoo.Classifier().checkpoint_path() != path
    monkeypatch.setenv("AIGC_SEED_OFFSET", "0")
    assert zoo.Classifier().checkpoint_path() == path
    monkeypatch.setenv("AIGC_PROFILE", "full")
    assert zoo.Classifier().replace(epochs=8).checkpoint_path() != path  # same settings, other profile


def test_a_tiny_recipe_trains_once_and_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    recipe = zoo.ReversalGPT().replace(steps=3, batch_size=8)
    assert not recipe.is_cached()
    model, history = zoo.reversal_gpt(progress=False, steps=3, batch_size=8)
    assert recipe.is_cached() and len(history["loss"]) == 3 and not model.training
    again, history2 = zoo.reversal_gpt(progress=False, steps=3, batch_size=8)
    assert history2["train_seconds"] == history["train_seconds"]
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), again.state_dict().values()))


# ----------------------------------------------------------------------------- the catalogue and the CLI
def test_catalog_has_one_row_per_recipe_with_a_cost():
    """A recipe's ``chapter`` is the stem of the notebook that trains it (numbers come from the
    table of contents, so a new chapter renames nothing)."""
    notebooks = {path.stem for path in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")}
    rows = zoo.catalog()
    assert [row["recipe"] for row in rows] == [cls.__name__ for cls in zoo.RECIPES]
    assert [row["name"] for row in rows] == [cls.name for cls in zoo.RECIPES]
    for row in rows:
        assert row["cost"].strip() and row["what"].strip() and row["name"], row
        assert row["chapter"] in notebooks, f"{row['name']}: no notebooks/{row['chapter']}.ipynb"


def test_every_recipe_has_a_zoo_function():
    functions = {"Classifier": "mnist_classifier", "RingGAN": "ring_gan", "MNISTGAN": "mnist_gan",
                 "RingVAE": "ring_vae", "MNISTVAE": "mnist_vae", "ReversalGPT": "reversal_gpt",
                 "ShakespeareGPT": "shakespeare_gpt", "ModernShakespeareGPT": "modern_shakespeare_gpt", "LLMPieceGPT": "llm_piece_gpt",
                 "MelodyGPT": "melody_gpt", "FakeDetector": "fake_detector",
                 "SmallTextGPT": "small_text_gpt", "DistilledGPT": "distilled_gpt", "RingDiffusion": "ring_diffusion",
                 "MNISTDiffusion": "mnist_diffusion", "MNISTLatentDiffusion": "latent_diffusion",
                 "PoemGPT": "poem_gpt", "InstructionGPT": "instruction_gpt", "QuestionDPO": "question_dpo",
                 "RingFlow": "ring_flow", "RingReflow": "ring_reflow", "MNISTFlow": "mnist_flow",
                 "ArithmeticSFT": "arithmetic_sft", "ArithmeticRewardModel": "arithmetic_reward_model",
                 "ArithmeticGRPO": "arithmetic_grpo", "MNISTCLIP": "mnist_clip", "TextToImage": "text_to_image"}
    for cls in zoo.RECIPES:
        assert callable(getattr(zoo, functions[cls.__name__])), cls.__name__
        assert cls.__name__ in zoo.__all__


def run_zoo(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "aigc_lib.zoo", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_command_line_lists_every_recipe():
    out = run_zoo()
    assert out.returncode == 0, out.stderr
    for cls in zoo.RECIPES:
        assert cls.name in out.stdout, cls.name
    assert len(out.stdout.strip().splitlines()) == len(zoo.RECIPES)


def test_the_command_line_rejects_an_unknown_name_and_names_the_choices():
    out = run_zoo("no-such-model")
    assert out.returncode != 0
    assert "no-such-model" in out.stderr and "choose from" in out.stderr
    for cls in zoo.RECIPES:
        assert cls.name in out.stderr, cls.name


# ----------------------------------------------------------------------------- smoke: the full profile at toy sizes
SIZE_FIELDS = ("steps", "epochs", "n_train", "n_prompts", "n_melodies", "n")


def sizes(recipe):
    """Every step, epoch and count setting of a recipe, its nested configs' included (not a nested
    recipe's, such as a base model: that one is sized by its own ``smoke_settings`` when it loads)."""
    configs = [c for c in nested_configs(recipe).values() if not isinstance(c, zoo.Recipe)]
    flat = {**dataclasses.asdict(recipe), **{k: v for c in configs for k, v in dataclasses.asdict(c).items()}}
    return {k: flat[k] for k in SIZE_FIELDS if k in flat}


@pytest.mark.parametrize("case", EVERY_RECIPE, ids=ids)
def test_smoke_trains_every_recipe_a_few_steps_of_the_full_profile(case, monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "full")
    full = make(*case)
    monkeypatch.setenv("AIGC_SMOKE", "1")
    smoke = full.sized()
    assert full.smoke_settings, f"{ids(case)} has no smoke_settings: under AIGC_SMOKE=1 it would train in full"
    assert type(smoke) is type(full) and smoke.cache_name == full.cache_name
    small = sizes(smoke)
    assert small and all(small[k] <= sizes(full)[k] for k in small) and small != sizes(full)
    assert max(v for k, v in small.items() if k in ("steps", "epochs")) <= 25
    for name, config in nested_configs(full).items():  # the full profile's model shapes are kept
        if isinstance(config, (GPTConfig,)) or name in ("unet", "net"):
            assert getattr(smoke, name) == config
    assert smoke.checkpoint_path() == full.checkpoint_path()  # both mean the smoke model
    monkeypatch.delenv("AIGC_SMOKE")
    assert full.sized() is full and full.checkpoint_path() != smoke.checkpoint_path()


def test_smoke_needs_the_full_profile_and_says_so(monkeypatch):
    from aigc_lib import config

    monkeypatch.setenv("AIGC_SMOKE", "1")
    monkeypatch.setenv("AIGC_PROFILE", "quick")
    with pytest.raises(ValueError, match="AIGC_PROFILE=full"):
        config.smoke()
    monkeypatch.setenv("AIGC_PROFILE", "full")
    monkeypatch.setenv("AIGC_SMOKE", "yes")
    with pytest.raises(ValueError, match="use 1"):
        config.smoke()
    monkeypatch.setenv("AIGC_SMOKE", "1")
    assert config.smoke() and config.by_profile(1, 2) == 2 and config.by_profile(1, 2, smoke=3) == 3
    monkeypatch.setenv("AIGC_SMOKE", "0")
    assert not config.smoke() and config.by_profile(1, 2, smoke=3) == 2
    monkeypatch.setenv("AIGC_PROFILE", "quick")
    assert config.by_profile(1, 2, smoke=3) == 1

