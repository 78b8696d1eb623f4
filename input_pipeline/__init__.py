"""One input interface for every dataset.

Datasets load on the host into uint8 NHWC numpy arrays (``load_dataset``), go
to the accelerator once (``put_on_mesh``), and are batched and augmented inside
the compiled step (``train_batch``, ``eval_batch``, ``augment``, ``normalize``).

Importing this package does not import TensorFlow: it is imported only when a
TFDS dataset is loaded, because the accelerator machines do not have it.
"""

from input_pipeline.augment import alternating_flip
from input_pipeline.augment import apply_ops
from input_pipeline.augment import center_crop
from input_pipeline.augment import color_jitter
from input_pipeline.augment import distort
from input_pipeline.augment import flip_translate_views, flip_views, translate_views
from input_pipeline.augment import lighting
from input_pipeline.augment import mixup_cutmix
from input_pipeline.augment import normalize
from input_pipeline.augment import random_crop
from input_pipeline.augment import random_erasing
from input_pipeline.augment import random_flip
from input_pipeline.augment import random_resized_crop
from input_pipeline.augment import scale_jitter_crop
from input_pipeline.augment import ten_crop
from input_pipeline.background import add_background_class
from input_pipeline.datasets import ArrayDataset
from input_pipeline.datasets import DatasetError
from input_pipeline.datasets import KNOWN_DATASETS
from input_pipeline.datasets import grey_to_rgb
from input_pipeline.datasets import load_dataset
from input_pipeline.datasets import train_subset
from input_pipeline.device import epoch_permutation
from input_pipeline.device import eval_batch
from input_pipeline.device import num_eval_batches
from input_pipeline.device import put_on_mesh
from input_pipeline.device import steps_per_epoch
from input_pipeline.device import take_rows
from input_pipeline.device import train_batch
from input_pipeline.device import train_indices
from input_pipeline.recipe import Plan
from input_pipeline.recipe import Recipe
from input_pipeline.recipe import RecipeError

__all__ = [
    "ArrayDataset",
    "DatasetError",
    "KNOWN_DATASETS",
    "Plan",
    "Recipe",
    "RecipeError",
    "add_background_class",
    "alternating_flip",
    "apply_ops",
    "center_crop",
    "color_jitter",
    "distort",
    "lighting",
    "epoch_permutation",
    "eval_batch",
    "flip_translate_views",
    "flip_views",
    "grey_to_rgb",
    "load_dataset",
    "mixup_cutmix",
    "normalize",
    "num_eval_batches",
    "put_on_mesh",
    "random_crop",
    "random_erasing",
    "random_flip",
    "random_resized_crop",
    "scale_jitter_crop",
    "steps_per_epoch",
    "take_rows",
    "ten_crop",
    "train_batch",
    "train_indices",
    "translate_views",
    "train_subset",
]
