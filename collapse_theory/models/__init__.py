"""Models: static objects with explicit parameter pytrees and pure ``fit``/``sample`` functions."""

from .base import ExactModel as ExactModel, Model as Model
from .gaussian import Gaussian as Gaussian, GaussianParams as GaussianParams, GaussianStats as GaussianStats
