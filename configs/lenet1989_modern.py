r"""LeNet-1989 with 33 years of hindsight: the same 9,760-parameter network trained with
cross-entropy, AdamW, 1-pixel shift augmentation, ReLU and dropout on H3. These are the
steps of the well-known PyTorch reproduction that took USPS error from 4.09% to 1.59%.

  python train.py --config configs/lenet1989_modern.py:usps --workdir runs/lenet1989m_usps
  python train.py --config configs/lenet1989_modern.py --workdir runs/lenet1989m   # digits

Arguments (comma-separated): ``usps`` trains on ../shared/data/usps (or $SHARED_DIR).
"""

from configs import lenet1989


def get_config(arg=None):
  c = lenet1989.get_config(arg)
  c.model_kwargs.activation = "relu"
  c.model_kwargs.output_activation = None  # logits for the softmax
  c.model_kwargs.h3_dropout = 0.25
  c.loss = "cross_entropy"
  c.optimizer = "adamw"
  c.learning_rate = 3e-4
  c.weight_decay = 1e-4
  c.schedule = "cosine"
  c.augment.crop_padding = 1  # shift by up to one pixel
  c.batch_size = 1
  c.num_epochs = 40
  return c
