"""Models: static objects with explicit parameter pytrees and pure ``fit``/``sample`` functions."""

from .base import ExactModel as ExactModel
from .base import Model as Model
from .categorical import Categorical as Categorical  # noqa: E401,E501
from .categorical import CategoricalParams as CategoricalParams
from .categorical import CategoricalStats as CategoricalStats
from .gaussian import Gaussian as Gaussian
from .gaussian import GaussianParams as GaussianParams
from .gaussian import GaussianStats as GaussianStats
from .gmm import GaussianMixture as GaussianMixture  # noqa: E401
from .gmm import GMMParams as GMMParams
from .gmm import Mixture as Mixture
from .kde import KDEParams as KDEParams
from .kde import KernelDensity as KernelDensity  # noqa: E401
from .ngram import NGram as NGram  # noqa: E401
from .ngram import NGramParams as NGramParams
from .regression import Downstream as Downstream
from .regression import LinearRegression as LinearRegression
from .regression import RegressionParams as RegressionParams
from .regression import RegressionStats as RegressionStats
from .regression import power_law_spectrum as power_law_spectrum
from .vae import VAE as VAE  # noqa: E401
from .vae import VAEParams as VAEParams
from .vae import VAEReference as VAEReference
