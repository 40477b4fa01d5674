"""Models: static objects with explicit parameter pytrees and pure ``fit``/``sample`` functions."""

from .base import ExactModel as ExactModel
from .base import Model as Model
from .gaussian import Gaussian as Gaussian
from .gaussian import GaussianParams as GaussianParams
from .gaussian import GaussianStats as GaussianStats
from .regression import Downstream as Downstream
from .regression import LinearRegression as LinearRegression
from .regression import RegressionParams as RegressionParams
from .regression import RegressionStats as RegressionStats
from .regression import power_law_spectrum as power_law_spectrum
