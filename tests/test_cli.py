"""The command line, in-process through ``main([...])`` and once as a ``python -m`` subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest

from collapse_theory import SimulationResult
from collapse_theory.cli import main


def test_module_help_subprocess():
    out = subprocess.run([sys.executable, "-m", "collapse_theory", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for word in ("run", "check", "figures", "list"):
        assert word in out.stdout


def test_version_names_the_package_and_its_numerical_libraries(capsys):
    """``collapse-theory --version`` prints what a result depends on and exits 0 (what a bug report needs)."""
    import jax

    import collapse_theory

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert f"collapse-theory {collapse_theory.__version__}" in out and f"jax {jax.__version__}" in out
    assert f"numpy {np.__version__}" in out


def test_list_into_a_closed_pipe_ends_quietly(monkeypatch):
    """``collapse-theory list | head -1``: the reader leaves early, so a write fails with EPIPE; ``main`` ends
    quietly with 141 (as ``ls | head`` does) and points stdout at /dev/null, so the interpreter's final flush does
    not print a BrokenPipeError either. Deterministic: stdout is a line-buffered pipe whose read end is already
    closed, so the first line written raises (a subprocess reading one line could see every byte written first)."""
    import os

    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    stream = open(write_fd, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        assert main(["list"]) == 141
        stream.write("after the reader left\n")  # now /dev/null: no error
        stream.flush()
    finally:
        stream.close()


def test_run_gaussian_options_metrics_and_quantiles(tmp_path):
    """The Gaussian's own options reach the model and its truth (--mean, --variance, --tail-k,
    --collapse-threshold), --metrics keeps only the named metrics and --quantiles sets the levels. The tail mass of
    the first fit is checked against its exact mean under the chosen truth: with k = 2 it would read the default
    k = 3's value (or the truth N(0, 1)'s) if an option were dropped."""
    from scipy import special, stats

    out = tmp_path / "g.npz"
    assert main(["run", "--ddof", "1", "--num-chains", "4000", "--num-generations", "2", "--num-samples", "50",
                 "--mean", "3", "--variance", "4", "--tail-k", "2", "--collapse-threshold", "0.01",
                 "--metrics", "tail_mass,log_variance", "--quantiles", "0.1,0.9", "--x64", "--no-progress",
                 "--out", str(out)]) == 0
    res = SimulationResult.load(out)
    assert set(res.summary) == {"tail_mass", "log_variance"}
    np.testing.assert_allclose(res.quantile_levels, [0.1, 0.9])
    assert res.config["model_options"]["tail_k"] == 2.0 and res.config["model_options"]["collapse_threshold"] == 0.01
    # E log σ̂² of the first fit = log 4 + ψ(49/2) + log(2/49): the truth's variance reached the simulation
    expected = np.log(4.0) + special.digamma(49 / 2) + np.log(2 / 49)
    assert abs(res.mean("log_variance")[0] - expected) < 4 * res.se("log_variance")[0]
    # the chains' means stay around the truth's: μ̂_2 − 3 has sd √(2·4/50) = 0.4 per chain, 0.006 over 4000
    assert abs(float(np.mean(res.final_params["mean"])) - 3.0) < 0.05
    # the fitted tail mass sits near the truth's own P(|Z| > 2) = 0.0455 (k = 3 would give 0.0027)
    assert abs(res.mean("tail_mass")[0] - 2 * stats.norm.sf(2.0)) < 0.01
    assert main(["run", "--ddof", "1", "--quantiles", "none", "--num-chains", "8", "--num-generations", "2",
                 "--num-samples", "5", "--no-progress", "--out", str(tmp_path / "n.npz")]) == 0
    assert SimulationResult.load(tmp_path / "n.npz").quantile_levels.size == 0


@pytest.mark.parametrize("argv, message", [
    (["--metrics", "no_such_metric"], "no_such_metric"),
    (["--quantiles", "0.5,1.5"], "--quantiles"),
    (["--quantiles", "a,b"], "--quantiles"),
    (["--variance", "0"], "--variance=0.0 is out of range"),
    (["--mean", "nan"], "--mean=nan is out of range"),
    (["--tail-k", "-1"], "tail_k=-1.0 is out of range"),
    (["--collapse-threshold", "2"], "collapse_threshold=2.0 is out of range"),
    (["--model", "kde", "--bandwidth", "0.5", "--variance", "2"], "--variance applies to the Gaussian"),
])
def test_run_rejects_bad_gaussian_and_summary_options(tmp_path, capsys, argv, message):
    out = tmp_path / "bad.npz"
    base = ["run", "--ddof", "1"] if "--model" not in argv else ["run"]
    assert main([*base, *argv, "--num-chains", "4", "--num-generations", "2", "--num-samples", "5",
                 "--no-progress", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_run_writes_npz_and_json(tmp_path, capsys):
    out = tmp_path / "r.npz"
    code = main(["run", "--ddof", "1", "--num-chains", "64", "--num-generations", "12", "--num-samples", "10",
                 "--seed", "3", "--out", str(out), "--x64", "--trajectories", "--no-progress", "--chunk-size", "5"])
    assert code == 0
    meta = json.loads((tmp_path / "r.json").read_text())
    assert meta["metadata"]["seed"] == 3 and meta["metadata"]["x64"] is True
    assert meta["config"]["model_options"]["ddof"] == 1
    res = SimulationResult.load(out)
    assert meta["quantile_levels"] == res.quantile_levels.tolist() and len(res.quantile_levels) > 0  # readable alone
    assert res.trajectories["log_variance"].shape == (12, 64)
    assert np.all(np.isfinite(res.mean("log_variance")))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_run_categorical_compact_stops_when_absorbed(tmp_path, capsys):
    """``--compact --stop-when-absorbed``: the result file records the support schedule and the stop, and has every
    generation's row."""
    out = tmp_path / "c.npz"
    code = main(["run", "--model", "categorical", "--categories", "200", "--num-chains", "32", "--num-generations",
                 "400", "--num-samples", "8", "--out", str(out), "--x64", "--no-progress", "--compact",
                 "--stop-when-absorbed"])
    assert code == 0
    assert "absorbed by generation" in capsys.readouterr().out
    meta = json.loads((tmp_path / "c.json").read_text())
    assert meta["config"]["compact"] is True and meta["metadata"]["support_schedule"][0] == [1, 200]
    res = SimulationResult.load(out)
    assert res.mean("entropy").shape == (400,) and res.mean("fixed")[-1] == 1.0
    assert res.final_params["probs"].shape == (32, 200) and "ids" not in res.final_params


def test_run_explains_an_infinite_final_mean(tmp_path, capsys):
    """A float32 sample-path chain collapses until its samples are all equal (σ ≪ |μ|·eps): its fitted variance is
    0 and log σ² = -inf, so the mean over chains is -inf and its SE NaN. The summary must say why, not print a
    bare "-inf ± nan"; a finite mean (the exact path) gets no such line."""
    common = ["run", "--ddof", "0", "--num-samples", "2", "--num-chains", "32", "--num-generations", "300",
              "--no-progress"]
    assert main(common + ["--path", "sample", "--out", str(tmp_path / "s.npz")]) == 0
    out = capsys.readouterr().out
    assert "final E log_variance = -inf" in out
    assert "log_variance: some chain's final value is -inf" in out and "--path exact" in out
    assert main(common + ["--path", "exact", "--out", str(tmp_path / "e.npz")]) == 0
    assert "not finite" not in capsys.readouterr().out


def test_run_regression_flags_reach_the_model(tmp_path, capsys):
    """``run --model regression``: the replace chain's excess risk after n fits is n σ² d/(T−d−1) (THEORY.md §3.1,
    ``theory.regression.replace_excess_risk``). A flag that does not reach the model fails: ignoring
    ``--noise-sd 2`` (σ² = 1) or ``--num-samples`` (another T) moves the value by many standard errors."""
    from collapse_theory.theory import regression as reg_theory

    out = tmp_path / "reg.npz"
    code = main(["run", "--model", "regression", "--dim", "4", "--noise-sd", "2", "--num-samples", "20",
                 "--num-chains", "2000", "--num-generations", "5", "--x64", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "final E test_error" in capsys.readouterr().out
    res = SimulationResult.load(out)
    sim, se = res.mean("test_error")[-1], res.se("test_error")[-1]
    theory = reg_theory.replace_excess_risk(5, 4, 20, noise_var=4.0)
    assert abs(sim - theory) / se < 4, (sim, se, theory)
    for wrong in (reg_theory.replace_excess_risk(5, 4, 20, noise_var=1.0),
                  reg_theory.replace_excess_risk(5, 4, 30, noise_var=4.0)):
        assert abs(sim - wrong) / se > 4, (sim, se, wrong)


def test_run_gmm_one_component_is_the_gaussian_chain(tmp_path, capsys):
    """``run --model gmm --components 1 --reg-covar 0``: EM with one component is the Gaussian MLE, so after n fits
    E log σ² = n E log(χ²_{M−1}/M) (THEORY.md §2.1, ``theory.gaussian.expected_log_variance`` with ddof 0;
    ``log_det_ratio`` is log σ² in one dimension). Planted: the unbiased estimator's law (ddof 1) is ~16 standard
    errors away. (A K = 2 fit would not be caught here: EM's fixed point keeps the sample's total variance.)"""
    from collapse_theory.theory import gaussian as gth

    out = tmp_path / "gmm.npz"
    code = main(["run", "--model", "gmm", "--components", "1", "--reg-covar", "0", "--num-samples", "20",
                 "--num-chains", "2000", "--num-generations", "5", "--x64", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "sample path" in capsys.readouterr().out  # the default path of a model without an exact path
    res = SimulationResult.load(out)
    sim, se = res.mean("log_det_ratio")[-1], res.se("log_det_ratio")[-1]
    assert abs(sim - gth.expected_log_variance(5, 20, ddof=0)) / se < 4, (sim, se)
    assert abs(sim - gth.expected_log_variance(5, 20, ddof=1)) / se > 4, (sim, se)


def test_run_gmm_truth_follows_the_flags(tmp_path, capsys):
    """The true mixture of ``run --model gmm`` (recorded in the JSON sidecar): K means ``--separation`` apart on
    the first axis, centred at 0; the summary prints the mixture metrics."""
    out = tmp_path / "g3.npz"
    code = main(["run", "--model", "gmm", "--components", "3", "--separation", "5", "--dim", "2", "--num-samples",
                 "60", "--num-chains", "8", "--num-generations", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "final E l2_to_truth" in capsys.readouterr().out
    meta = json.loads((tmp_path / "g3.json").read_text())
    assert meta["metadata"]["truth"]["means"] == [[-5.0, 0.0], [0.0, 0.0], [5.0, 0.0]]
    assert meta["config"]["model_options"]["num_components"] == 3


def test_run_kde_spread_matches_theory(tmp_path, capsys):
    """``run --model kde`` on N(0, I_2) (``--dataset normal``): the replace chain's mean per-coordinate spread after
    n fits is r^n + h² Σ_{k=1}^{n−1} r^k, r = (M−1)/M (Kazdan et al.; ``theory.kde.expected_spread``). Planted: a
    ``--bandwidth`` that does not reach the model (h = 1 instead of 0.5), and the generation index shifted by one."""
    from collapse_theory.theory import kde as kth

    out = tmp_path / "kde.npz"
    code = main(["run", "--model", "kde", "--bandwidth", "0.5", "--dim", "2", "--num-samples", "10", "--num-chains",
                 "2000", "--num-generations", "5", "--x64", "--out", str(out), "--no-progress"])
    assert code == 0
    res = SimulationResult.load(out)
    sim, se = res.mean("spread")[-1], res.se("spread")[-1]
    assert abs(sim - kth.expected_spread(5, 10, 0.5, 1.0)) / se < 4, (sim, se)
    for wrong in (kth.expected_spread(5, 10, 1.0, 1.0), kth.expected_spread(5, 10, 0.5, 1.0) + 0.25):
        assert abs(sim - wrong) / se > 4, (sim, se, wrong)


@pytest.mark.parametrize("argv, message", [
    (["--model", "gmm", "--bandwidth", "1"], "--bandwidth applies to --model kde, not --model gmm"),
    (["--ddof", "1", "--components", "3"], "--components applies to --model gmm, not --model gaussian"),
    (["--model", "kde", "--ddof", "1"], "--ddof applies to the Gaussian, not --model kde"),
    (["--model", "kde"], "--model kde needs --bandwidth"),
    (["--model", "kde", "--bandwidth", "1", "--dataset", "blobs", "--data-noise", "0.1"],
     "--data-noise applies to moons, circles and swiss-roll"),
    (["--model", "categorical", "--order", "3"], "--order applies to --model ngram, not --model categorical"),
    (["--model", "ngram", "--latent-dim", "3"], "--latent-dim applies to --model vae, not --model ngram"),
    (["--ddof", "1", "--gate", "grammar"], "--gate applies to --model ngram or --model vae, not --model gaussian"),
    (["--model", "vae", "--gate", "facts"], "--gate facts applies to --model ngram, not --model vae"),
    (["--model", "ngram", "--gate-retries", "2"], "--gate-retries and --gate-threshold need --gate"),
    (["--model", "ngram", "--dim", "3"], "--dim does not apply to --model ngram"),
    (["--model", "categorical", "--dim", "3"], "--dim does not apply to --model categorical"),
    (["--ddof", "1", "--slope", "2"], "--slope applies to --schedule linear, not --schedule constant"),
    (["--ddof", "1", "--schedule", "linear", "--exponent", "2"], "--exponent applies to --schedule power"),
    (["--ddof", "1", "--regime", "fresh-fraction"], "--regime fresh-fraction needs --gamma"),
    (["--ddof", "1", "--regime", "fresh-fraction", "--gamma", "0.25", "--num-samples", "2"],
     "round(gamma*M) = 0: 0 fresh real rows"),
    (["--model", "vae", "--num-real", "10", "--num-samples", "20"], "--num-real=10 is out of range"),
])
def test_run_model_options_belong_to_their_model(tmp_path, capsys, argv, message):
    """An option of another model (or schedule) is an error that names it (it used to be ignored silently), printed
    as every other bad input is: ``collapse-theory run: error: ...``, exit code 2, no file written."""
    assert main(["run", *argv, "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("collapse-theory run: error: ") and message in err, err
    assert not list(tmp_path.iterdir())


def test_run_vae_unknown_images_is_a_clear_error(tmp_path, capsys):
    """``--images`` names the data set; an unknown name stops before any training, naming the value and the choices."""
    assert main(["run", "--model", "vae", "--images", "faces", "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    assert "images='faces' is not one of 'shapes', 'digits', 'mnist:DIR'" in capsys.readouterr().err


def test_run_kde_with_a_growing_schedule_fits_its_pool(tmp_path, capsys):
    """``run --model kde`` sizes the KDE for the regime and schedule (``capacity_for``): an accumulated pool under
    a linear schedule holds G · max_t M_t rows (the engine gives each generation max_t M_t slots); the sum of the
    M_t (425 here) was too small and failed at trace time."""
    from collapse_theory import Accumulate, FreshFraction, Replace
    from collapse_theory.models.kde import capacity_for

    sizes = [10, 20, 30]
    assert capacity_for(Accumulate(), sizes, 3) == 90 and capacity_for(Accumulate(), 10, 3) == 30
    assert capacity_for(Replace(), sizes, 3) == 30 and capacity_for(FreshFraction(0.5), sizes, 3) == 60
    code = main(["run", "--model", "kde", "--bandwidth", "0.3", "--regime", "accumulate", "--schedule", "linear",
                 "--slope", "5", "--num-samples", "20", "--num-generations", "10", "--num-chains", "4",
                 "--out", str(tmp_path / "k.npz"), "--no-progress"])
    assert code == 0, capsys.readouterr().err


def test_run_ngram_fact_share_follows_the_smoothed_refit(tmp_path, capsys):
    """``run --model ngram``: every sentence opens with BOS, so the BOS row of the bigram table is refitted on exactly
    M draws from the previous row; an add-α refit is linear in the counts, so the fact share x_t = Σ_e P(e | BOS)
    follows E x_t = (M E x_{t−1} + E α) / (M + (V − 2) α), x_0 = f (the grammar's ``--fact-fraction``), with E
    entities and V tokens. Planted: α not reaching the model (x_t = f, a martingale) and ``--entities`` not reaching
    the grammar (60 entities, V = 115). The sidecar records the grammar; the summary prints the language metrics."""
    from collapse_theory.corpus import Grammar

    m, e, alpha, f, g = 20, 20, 0.05, 0.1, 5

    def expected(num_entities, smoothing):
        v, x = Grammar(num_entities=num_entities).vocab_size, f
        for _ in range(g):
            x = (m * x + num_entities * smoothing) / (m + (v - 2) * smoothing)
        return x

    out = tmp_path / "ngram.npz"
    code = main(["run", "--model", "ngram", "--smoothing", str(alpha), "--entities", str(e), "--fact-fraction",
                 str(f), "--num-samples", str(m), "--num-chains", "1000", "--num-generations", str(g), "--x64",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "final E grammaticality" in printed and "final E fact_accuracy_tail" in printed
    res = SimulationResult.load(out)
    sim, se = res.mean("fact_share")[-1], res.se("fact_share")[-1]
    assert abs(sim - expected(e, alpha)) / se < 4, (sim, se, expected(e, alpha))
    for wrong in (expected(e, 0.0), expected(60, alpha)):
        assert abs(sim - wrong) / se > 4, (sim, se, wrong)
    meta = json.loads((tmp_path / "ngram.json").read_text())
    assert meta["config"]["model_options"]["grammar"]["num_entities"] == e
    assert meta["metadata"]["truth"]["num_reference"] == 2000


def test_run_ngram_grammar_gate_keeps_the_text_grammatical(tmp_path, capsys):
    """``--gate grammar`` wraps the regime in ``regimes.Gate`` with ``GrammarCheck``: the refits see grammatical
    sentences only, so the share of grammatical samples does not fall (it falls from 0.71 to 0.21 in six fits
    without the gate, α = 0.01, M = 200). Fails if the flag does not reach the regime."""
    out = tmp_path / "gated.npz"
    code = main(["run", "--model", "ngram", "--gate", "grammar", "--num-samples", "200", "--num-chains", "16",
                 "--num-generations", "6", "--out", str(out), "--no-progress"])
    assert code == 0
    res = SimulationResult.load(out)
    mean, se = res.mean("grammaticality"), res.se("grammaticality")
    assert mean[-1] > mean[0] - 4 * np.hypot(se[0], se[-1]), (mean, se)
    options = res.config["regime_options"]
    assert res.config["regime"] == "Gate" and options["inner"] == {"type": "Replace"}
    assert options["predicate"]["type"] == "GrammarCheck" and options["retries"] == 0


def test_run_vae_flags_reach_the_model_and_the_gate(tmp_path, capsys):
    """``run --model vae`` on the procedural shapes: the network flags reach the VAE, ``--gate confident`` wraps
    the regime in a classifier gate with ``--gate-threshold`` (its weights recorded by shape and hash, not copied),
    and the sidecar names the data and the rare classes."""
    out = tmp_path / "vae.npz"
    code = main(["run", "--model", "vae", "--regime", "accumulate", "--gate", "confident", "--gate-threshold",
                 "0.8", "--gate-retries", "1", "--num-chains", "2", "--num-generations", "2", "--num-samples", "100",
                 "--num-real", "400", "--steps", "20", "--hidden", "16", "--latent-dim", "3",
                 "--classifier-steps", "50", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "final E rare_share" in capsys.readouterr().out
    res = SimulationResult.load(out)
    opts = res.config["model_options"]
    assert (opts["latent_dim"], opts["hidden"], opts["steps"], opts["image_shape"]) == (3, [16], 20, [8, 8])
    gate = res.config["regime_options"]
    assert gate["inner"] == {"type": "Accumulate"} and gate["retries"] == 1
    assert gate["predicate"]["type"] == "Confident" and gate["predicate"]["threshold"] == 0.8
    assert set(gate["predicate"]["params"]["hidden"]["w"]) == {"shape", "dtype", "sha256"}
    truth = res.metadata["truth"]
    assert truth["images"] == "shapes" and truth["rare_classes"] == ["plus", "ring"]
    assert np.all(np.isfinite(res.mean("neg_elbo")))


def test_quick_figures_do_not_overwrite_the_full_size_ones(tmp_path, monkeypatch, capsys):
    """``figures --quick`` (README set-up command) writes into figures/quick/, not over the committed figures/."""
    monkeypatch.chdir(tmp_path)
    assert main(["figures", "--quick", "--only", "gaussian_classroom"]) == 0
    assert sorted(p.name for p in (tmp_path / "figures" / "quick").iterdir()) == [
        "gaussian_classroom.pdf", "gaussian_classroom.png"]
    assert not list((tmp_path / "figures").glob("*.png"))


def test_run_out_must_be_an_npz_file_and_ctrl_c_is_reported(tmp_path, capsys, monkeypatch):
    """``--out x.txt`` is refused (it was silently written as x.npz); Ctrl-C prints one line and exits 130 with no
    result file (the result is written atomically), not a traceback."""
    assert main(["run", "--ddof", "1", "--out", str(tmp_path / "x.txt")]) == 2
    assert "give a name ending in .npz" in capsys.readouterr().err
    engine = sys.modules["collapse_theory.simulate"]  # the package attribute of that name is the function

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "simulate", interrupted)
    assert main(["run", "--ddof", "1", "--num-chains", "4", "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 130
    assert "interrupted; no result file written" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_output_paths_and_selections_are_checked_before_the_work(tmp_path, capsys):
    """``check --json DIR`` failed only after every check had run (losing the table); a name and a family that
    select no check together ran nothing and exited 0 (an empty table reads as a pass); a file that is not a result
    gave a KeyError traceback in ``merge`` and in ``SimulationResult.load``, which also wants the suffix that
    ``save`` adds."""
    assert main(["check", "--quick", "--json", str(tmp_path)]) == 2
    assert "is a folder: give a file name" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["check", "--quick", "--markdown", str(tmp_path / "file" / "t.md")]) == 2
    err = capsys.readouterr().err
    assert "its folder" in err and "is a file, not a folder" in err
    assert main(["check", "--quick", "--name", "gaussian-replace-std", "--family", "kde"]) == 2
    assert "select no check together: the named checks belong to ['gaussian']" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    np.savez(junk, a=np.zeros(2))
    assert main(["merge", str(junk), str(junk), "--out", str(tmp_path / "m.npz")]) == 2
    assert "is not a collapse_theory result file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is not a collapse_theory result file"):
        SimulationResult.load(junk)
    assert main(["run", "--ddof", "1", "--num-chains", "4", "--num-generations", "2", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    assert SimulationResult.load(tmp_path / "r").num_chains == 4  # written as r.npz, read back as r


def test_run_requires_ddof(capsys):
    assert main(["run", "--num-chains", "4", "--num-generations", "2"]) == 2
    assert "--ddof is required" in capsys.readouterr().err


def test_run_bad_input_is_a_clear_error(tmp_path, capsys):
    code = main(["run", "--ddof", "1", "--num-samples", "1", "--num-chains", "4", "--num-generations", "2",
                 "--out", str(tmp_path / "x.npz"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "num_samples=1" in err and ">= 2" in err
    assert not (tmp_path / "x.npz").exists()


def test_run_fresh_fraction_gamma_checked(tmp_path, capsys):
    code = main(["run", "--ddof", "1", "--regime", "fresh-fraction", "--gamma", "1.5", "--num-chains", "4",
                 "--num-generations", "2", "--out", str(tmp_path / "x.npz"), "--no-progress"])
    assert code == 2
    assert "gamma=1.5" in capsys.readouterr().err


def test_check_json_records(tmp_path, capsys):
    path = tmp_path / "check.json"
    markdown = tmp_path / "check.md"
    code = main(["check", "--quick", "--name", "gaussian-replace-grown", "--json", str(path),
                 "--markdown", str(markdown)])
    assert code == 0
    records = json.loads(path.read_text())
    assert records
    for r in records:
        for key in ("name", "family", "reference", "quantity", "theory", "simulation", "se", "z", "passed"):
            assert key in r
    assert "passed" in capsys.readouterr().out
    # the same rows as a Markdown table: metadata line, header, one line per record with its z and verdict
    lines = markdown.read_text().splitlines()
    assert lines[0].startswith("seed = 0; quick = True") and "jax = " in lines[0]
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| check | reference | formula | quantity | theory")
    rows = table[1:]
    assert len(rows) == len(records) and "`gaussian-replace-grown`" in rows[0]
    for line, r in zip(rows, records, strict=True):
        assert f"{r['z']:+.2f}" in line and ("PASS" if r["passed"] else "FAIL") in line
    n_pass = sum(r["passed"] and r.get("kind") != "empirical" for r in records)
    assert lines[-1].startswith(f"{n_pass} passed, 0 failed") and lines[-1].endswith("1 checks"), lines[-1]


def test_check_rows_do_not_depend_on_jobs(tmp_path):
    """``check --jobs 2`` runs each family in a spawned worker process; the rows must equal the serial run's, in
    the same order (catches a worker with other JAX settings, e.g. x64 off, or rows merged out of order)."""
    picked = ["--name", "gaussian-replace-grown", "--name", "categorical-zero-count"]
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    assert main(["check", "--quick", *picked, "--jobs", "1", "--json", str(serial)]) == 0
    assert main(["check", "--quick", *picked, "--jobs", "2", "--json", str(parallel)]) == 0
    rows_serial, rows_parallel = json.loads(serial.read_text()), json.loads(parallel.read_text())
    assert [r["name"] for r in rows_serial] == ["gaussian-replace-grown"] * 2 + ["categorical-zero-count"]
    for a, b in zip(rows_serial, rows_parallel, strict=True):
        assert {k: a[k] for k in ("name", "quantity", "theory", "simulation", "se", "z")} == \
            {k: b[k] for k in ("name", "quantity", "theory", "simulation", "se", "z")}
    assert main(["check", "--quick", *picked, "--jobs", "0"]) == 2


def test_check_fails_with_nonzero_exit_when_z_is_impossible(capsys):
    assert main(["check", "--quick", "--name", "gaussian-replace-grown", "--z", "0"]) == 1


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "gaussian-accumulate" in out and "replace" in out


def test_figures_run_each_experiment_in_its_own_precision_and_check_out_first(tmp_path, capsys):
    """``figures`` switched float64 on for the whole process, so an experiment that keeps JAX's default (float32,
    as the GMM, KDE and VAE figures and their captions do) drew different bytes than ``python
    experiments/fig_NAME.py``; a ``--out`` under a file failed with a traceback after the simulation had run."""
    experiments = tmp_path / "exp"
    experiments.mkdir()
    (experiments / "fig_probe.py").write_text(
        "NAME = 'probe'\n"
        "def main(argv):\n"
        "    import pathlib, jax\n"
        "    out = pathlib.Path(argv[argv.index('--out') + 1])\n"
        "    out.mkdir(parents=True, exist_ok=True)\n"
        "    (out / 'x64.txt').write_text(str(jax.config.jax_enable_x64))\n"
        "    return 0\n")
    out = tmp_path / "figs"
    assert main(["figures", "--experiments-dir", str(experiments), "--out", str(out)]) == 0
    assert (out / "x64.txt").read_text() == "False"
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["figures", "--experiments-dir", str(experiments), "--out", str(blocker / "sub")]) == 2
    assert "lies under" in capsys.readouterr().err and not (blocker.parent / "x64.txt").exists()
    assert main(["demo", "tails", "--out", str(blocker / "x.gif")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_sizes_seeds_and_chain_ids_beyond_32_bits_are_refused(capsys):
    """M = 3·10⁹ wrapped to a negative int32 (every categorical chain fixed at once; NaN for the Gaussian), seed 2³²
    repeated seed 0's stream in float32 mode, chain_offset 2³¹ raised an OverflowError traceback, and a power-law
    exponent of 30 ran for minutes: each is now a usage error before any work."""
    for argv, message in (
            (["--model", "categorical", "--num-samples", "3000000000"], "need M_t <= 2**31 - 1"),
            (["--model", "categorical", "--num-samples", "1000000000", "--regime", "replace-grown"],
             "ReplaceGrown draws sum_(k<=t) M_k = 3e+09"),
            (["--model", "gaussian", "--ddof", "1", "--schedule", "power", "--exponent", "30"], "M_2 = 1.074e+11"),
            (["--model", "categorical", "--num-samples", "16777217"], "is not exact in float32"),
            (["--model", "categorical", "--seed", str(2**32)], "need 0 <= seed < 2**32"),
            (["--model", "categorical", "--chain-offset", str(2**31)], "need chain_offset + num_chains <= 2**31 - 1"),
            (["--model", "gaussian", "--ddof", "1", "--path", "sample", "--num-samples", "100000000"],
             "37.3 GiB for 100 chains at once")):
        assert main(["run", *argv, "--num-chains", "100", "--num-generations", "3", "--no-progress"]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_run_checks_its_files_before_the_work(tmp_path, capsys, monkeypatch):
    """A --out under a file, a --out whose .npz or .json name is a folder, a --checkpoint under a file and a
    --checkpoint-every with no checkpoint failed after the whole run (with a traceback, or leaving an .npz without
    its sidecar) or were ignored; a ridgeless regression with |rows − d| <= 1 printed a finite mean of an infinite
    expectation without a word."""
    engine = sys.modules["collapse_theory.simulate"]

    def never(*args, **kwargs):
        raise AssertionError("simulate ran before the paths were checked")

    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "e.json").mkdir()
    monkeypatch.setattr(engine, "simulate", never)
    for extra, message in (
            (["--out", str(blocker / "x.npz")], "is a file, not a folder"),
            (["--out", str(tmp_path / "e.npz")], "is a folder, and the result writes that file"),
            (["--out", str(tmp_path / "r.npz"), "--checkpoint", str(blocker / "c.npz")], "is a file, not a folder"),
            (["--out", str(tmp_path / "r.npz"), "--checkpoint-every", "5"], "writes nothing without --checkpoint")):
        assert main(["run", "--ddof", "1", "--num-chains", "4", "--no-progress", *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "file"]
    monkeypatch.undo()
    assert main(["run", "--model", "regression", "--dim", "10", "--num-samples", "11", "--num-chains", "20",
                 "--num-generations", "2", "--no-progress", "--out", str(tmp_path / "r.npz")]) == 0
    assert "has an infinite expected test error" in capsys.readouterr().out
