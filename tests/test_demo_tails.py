"""The classroom demo ``collapse-theory demo tails``: its frames are the engine's chain 0, the GIF is written
atomically with every frame, and bad options are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from collapse_theory import Accumulate, Replace, simulate
from collapse_theory.cli import main
from collapse_theory.demo_tails import compute_frames, run_demo
from collapse_theory.models.categorical import Categorical


def test_frames_are_the_engine_chain_zero():
    frames = compute_frames(3, 12, 1.1, 15, 7, temperature=0.8)
    model = Categorical(12, temperature=0.8, max_samples=15)
    for name, regime in (("replace", Replace()), ("accumulate", Accumulate())):
        res = simulate(3, model, regime, num_chains=2, num_generations=7, num_samples=15, truth=model.zipf(1.1),
                       path="exact", metrics=["entropy"], quantiles=())
        np.testing.assert_allclose(frames[name][-1], np.asarray(res.final_params.probs)[0], rtol=1e-12)
        assert frames[name].shape == (8, 12)
    np.testing.assert_allclose(frames["replace"][0], frames["truth"])
    # accumulate never loses a category after the first (real) fit; replace never regains one
    alive_acc = (frames["accumulate"][1:] > 0).sum(axis=1)
    assert np.all(alive_acc == alive_acc[0])
    assert np.all(np.diff((frames["replace"] > 0).sum(axis=1)) <= 0)


def test_cli_demo_writes_an_animated_gif(tmp_path, capsys):
    out = tmp_path / "demo" / "tails.gif"
    code = main(["demo", "tails", "--out", str(out), "--categories", "8", "--samples", "10", "--generations", "5",
                 "--interactive"])
    assert code == 0
    text = capsys.readouterr().out
    assert "replace" in text and "accumulate" in text and str(out) in text
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 6
    assert [p.name for p in out.parent.iterdir()] == ["tails.gif"], "temporary files left behind"


def test_demo_bad_options(tmp_path):
    with pytest.raises(ValueError, match="num_categories=500"):
        run_demo(tmp_path / "x.gif", num_categories=500)
    with pytest.raises(ValueError, match="num_samples=0"):
        run_demo(tmp_path / "x.gif", num_samples=0)
    assert main(["demo", "tails", "--out", str(tmp_path / "y.gif"), "--temperature", "0"]) == 2
    assert not (tmp_path / "y.gif").exists()
    with pytest.raises(ValueError, match="fps=100000 is out of range.*fps <= 50"):  # GIF delays: 1/100 s steps
        run_demo(tmp_path / "x.gif", fps=100000)
    with pytest.raises(ValueError, match="ending in .gif"):  # it used to write a GIF named x.txt
        run_demo(tmp_path / "x.txt")
    assert not list(tmp_path.iterdir())


def test_cli_run_categorical(tmp_path, capsys):
    from collapse_theory import SimulationResult

    out = tmp_path / "cat.npz"
    code = main(["run", "--model", "categorical", "--categories", "20", "--zipf", "1.2", "--temperature", "0.9",
                 "--num-chains", "32", "--num-generations", "6", "--num-samples", "15", "--out", str(out), "--x64",
                 "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "heterozygosity" in text and "surviving" in text
    res = SimulationResult.load(out)
    assert res.config["model"] == "Categorical" and res.config["model_options"]["temperature"] == 0.9
    assert res.mean("surviving")[-1] <= res.mean("surviving")[0] <= 20
    assert main(["run", "--model", "categorical", "--ddof", "1", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--ddof applies to the Gaussian" in capsys.readouterr().err
    assert main(["run", "--model", "categorical", "--categories", "1", "--num-chains", "2", "--num-generations",
                 "2", "--out", str(tmp_path / "y.npz"), "--no-progress"]) == 2
    assert "num_categories=1" in capsys.readouterr().err
