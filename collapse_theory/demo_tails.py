r"""Classroom demo: a Zipf histogram losing its tail, generation by generation (replace vs accumulate).

``collapse-theory demo tails`` writes an animated GIF (matplotlib's PillowWriter; no ffmpeg needed) and prints a
short explanation. One chain per regime, on the exact path of :class:`~collapse_theory.models.categorical.Categorical`:
truth Zipf(β) over K outcomes; each generation draws M outcomes and refits the empirical frequencies, from the
previous fit's samples only (**replace**) or from every sample so far, the M real ones included (**accumulate**).

The frames are computed with the model's own exact sampler and the engine's key derivation
(:func:`collapse_theory.keys.derive_key` with chain 0 and purpose ``SAMPLE``), so the last frame of each panel is
the same chain that ``simulate(seed, model, regime, path="exact")`` returns as chain 0 (a test checks this); all
frames are computed first, then drawn from NumPy. Theory (THEORY.md §7): under replace every category is lost
eventually and the chain ends on category i with probability :math:`p_{0,i}`; under accumulate a category lost in
the first (real) sample is never recovered but no other is ever lost, and the heterozygosity only falls to
:math:`H_0\,\sin(x)/x`, :math:`x = \pi/\sqrt M`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EXPLANATION = """\
Model collapse in a classroom: a Zipf distribution refitted to its own samples.

  Each generation draws M = {m} words from the current model and refits the word frequencies.
  * replace (left): train only on the newest synthetic sample. A word that happens to draw no sample
    gets probability 0 and can never come back: rare words (the tail) go first. After {g} generations
    {rep_alive} of the {k} words survive; in the end a single word is left (it is word i with
    probability p0_i).
  * accumulate (right): keep every sample so far, real data included. Words missing from the first real
    sample are lost, but no other word is ever lost: {acc_alive} of {k} survive, and the diversity
    1 - sum p^2 stops at about H0 * sin(x)/x, x = pi/sqrt(M), instead of decaying like (1 - 1/M)^t.
  Temperature tau = {tau:g} (tau < 1 sharpens every synthetic sample and loses the tail faster).

Wrote {path} ({frames} frames)."""


def compute_frames(seed: int, num_categories: int, beta: float, num_samples: int, num_generations: int,
                   temperature: float = 1.0) -> dict:
    """Per-generation probability vectors of chain 0 for replace and accumulate (NumPy arrays (G+1, K))."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from .keys import SAMPLE, derive_key, root_key
    from .models.categorical import Categorical

    model = Categorical(num_categories, temperature=temperature, max_samples=num_samples)
    truth = model.zipf(beta)
    root = root_key(seed)
    m = jnp.asarray(num_samples, truth.probs.dtype)

    def step(carry, t):
        replace, pool = carry
        key = derive_key(root, 0, t, SAMPLE)
        first = t == 1
        source = jax.tree.map(lambda a, b: jnp.where(first, a, b), truth, replace)
        replace = model.fit_from_stats(model.sample_stats(key, source, m))
        acc_source = jax.tree.map(lambda a, b: jnp.where(first, a, b), truth, model.fit_from_stats(pool))
        pool = model.combine_stats(pool, model.sample_stats(key, acc_source, m))
        accumulate = model.fit_from_stats(pool)
        return (replace, pool), (replace.probs, accumulate.probs)

    @jax.jit
    def run():
        init = (truth, model.empty_stats(truth))
        return jax.lax.scan(step, init, jnp.arange(1, num_generations + 1))[1]

    rep, acc = run()
    p0 = np.asarray(truth.probs)[None]
    return {"truth": p0[0], "replace": np.concatenate([p0, np.asarray(rep)]),
            "accumulate": np.concatenate([p0, np.asarray(acc)]), "num_samples": num_samples,
            "beta": beta, "temperature": temperature}


def animate(frames: dict, path, *, fps: int = 6, dpi: int = 80):
    """Draw the frames as a two-panel animation and write ``path`` (GIF) atomically; returns the Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import numpy as np
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.figure import Figure

    from . import plotting

    truth = frames["truth"]
    k = truth.size
    ranks = np.arange(1, k + 1)
    num = frames["replace"].shape[0]
    with plotting.style_context("classroom", rc={"font.size": 11, "axes.titlesize": 13}):
        fig = Figure(figsize=(10, 4.2), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        bars, titles = {}, {}
        for ax, name in zip(axes, ("replace", "accumulate"), strict=True):
            ax.bar(ranks, truth, width=1.0, color="none", edgecolor="0.55", linewidth=0.8, label="real (Zipf)")
            bars[name] = ax.bar(ranks, frames[name][0], width=0.8, color="#e76300" if name == "replace"
                                else "#3f90da", label="model")
            ax.set_yscale("log")
            ax.set_ylim(0.3 / frames["num_samples"], 1.0)
            ax.set_xlim(0.3, k + 0.7)
            ax.set_xlabel("word rank")
            titles[name] = ax.set_title("", fontsize=11)
            ax.legend(loc="upper right", fontsize=9)
        axes[0].set_ylabel("probability (log scale)")
        heading = fig.suptitle("", fontsize=14)

        def draw(i):
            for name in ("replace", "accumulate"):
                p = frames[name][i]
                for bar, h in zip(bars[name], p, strict=True):
                    bar.set_height(h if h > 0 else 1e-12)
                alive = int(np.sum(p > 0))
                lost = float(np.sum(truth[p == 0]))
                titles[name].set_text(f"{name}: {alive}/{k} words alive, real mass lost {lost:.0%}")
            heading.set_text(f"generation {i}" + (" (the real distribution)" if i == 0 else "")
                             + f"   M = {frames['num_samples']} samples per generation, τ = "
                               f"{frames['temperature']:g}")
            return []

        anim = FuncAnimation(fig, draw, frames=num, interval=1000 / fps, blit=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".gif")
        os.close(fd)
        try:
            anim.save(tmp, writer=PillowWriter(fps=fps), dpi=dpi)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return fig


def has_display() -> bool:
    """Whether an interactive matplotlib window can open (a display on Linux; macOS and Windows always)."""
    import sys

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(out, *, seed: int = 0, num_categories: int = 30, beta: float = 1.1, num_samples: int = 50,
             num_generations: int = 40, temperature: float = 1.0, fps: int = 6, interactive: bool = False,
             echo=print) -> dict:
    """Compute the frames, write the GIF to ``out``, print the explanation; optionally show a window."""
    import numpy as np

    for name, value, low in (("num_categories", num_categories, 2), ("num_samples", num_samples, 1),
                             ("num_generations", num_generations, 1), ("fps", fps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} is out of range: need an int {name} >= {low}")
    if num_categories > 200:
        raise ValueError(f"num_categories={num_categories} is out of range: the demo draws one bar per category, "
                         "need num_categories <= 200")
    if fps > 50:
        raise ValueError(f"fps={fps} is out of range: GIF frame times are whole hundredths of a second (at least "
                         "2 for most viewers), so need fps <= 50")
    if Path(out).suffix.lower() != ".gif" or Path(out).is_dir():
        raise ValueError(f"out={str(out)!r} is out of range: the demo writes an animated GIF, need a file name "
                         "ending in .gif")
    frames = compute_frames(seed, num_categories, beta, num_samples, num_generations, temperature)
    fig = animate(frames, out, fps=fps)
    echo(EXPLANATION.format(m=num_samples, g=num_generations, k=num_categories,
                            rep_alive=int(np.sum(frames["replace"][-1] > 0)),
                            acc_alive=int(np.sum(frames["accumulate"][-1] > 0)), tau=temperature, path=out,
                            frames=num_generations + 1))
    if interactive:
        if not has_display():
            echo("--interactive: no display found (DISPLAY is not set); the GIF was written instead.")
        else:
            _show(frames, fps)
    return {"frames": frames, "figure": fig}


def _show(frames: dict, fps: int) -> None:  # pragma: no cover - needs a display
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.animation import FuncAnimation

    truth = frames["truth"]
    ranks = np.arange(1, truth.size + 1)
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(10, 4.2), layout="constrained")
    bars = {}
    for ax, name in zip(axes, ("replace", "accumulate"), strict=True):
        ax.bar(ranks, truth, width=1.0, color="none", edgecolor="0.55")
        bars[name] = ax.bar(ranks, frames[name][0], width=0.8)
        ax.set_yscale("log")
        ax.set_ylim(0.3 / frames["num_samples"], 1.0)
        ax.set_title(name)

    def draw(i):
        for name in bars:
            for bar, h in zip(bars[name], frames[name][i], strict=True):
                bar.set_height(h if h > 0 else 1e-12)
        fig.suptitle(f"generation {i}")
        return []

    anim = FuncAnimation(fig, draw, frames=frames["replace"].shape[0], interval=1000 / fps)
    plt.show()
    del anim
