r"""LeNet-1989 with 33 years of hindsight: the same 9,760-parameter network trained with
cross-entropy, AdamW, 1-pixel shift augmentation, ReLU and dropout on H3, for 80 passes.
These are the steps of the well-known PyTorch reproduction (karpathy/lecun1989-repro),
which took its error from 4.09% to 1.59%. Its data, though, was MNIST downsampled to
16x16 (7291/2007 random digits), not USPS. On the real USPS this recipe gives 3.04%
(2-core CPU, under 2 min), and 2.64% with 2-pixel shifts (--config.augment.crop_padding=2);
the faithful 1989 recipe gives 5.0-5.8%.

Measured (seeds 0, 1, 2; final pass; "EMA": the weights' moving average, ``ema_decay``):

| data    | recipe                                                   | error              |
|---------|----------------------------------------------------------|--------------------|
| mnist16 | this config                                              | 1.94, 1.99, 2.04%  |
| mnist16 | schedule=linear, crop_mode=wrap (the reproduction's)     | 1.94% (seed 0)     |
| mnist16 | + ema_decay=0.9999, num_epochs=160 (3 min), EMA weights  | 1.44, 1.49, 1.74%  |
| usps    | crop_padding=2, ema_decay=0.9999, EMA weights            | 2.49, 3.09, 2.89%  |
| usps    | + learning_rate=1e-3, h3_dropout=0.1 (held-out choice)   | 2.79, 2.69, 2.74%  |
| usps    | ``tuned``: that + eval_mode=translate (held-out choice)  | 2.49, 2.44, 2.39%  |
| mnist16 | ``tuned``: the 160-pass row + eval_mode=translate        | 1.49, 1.59, 1.59%  |

``tuned`` takes the settings chosen on held-out training digits for its data (``TUNED``
below; README, Results), test-time shift averaging (``augment.eval_mode=translate``: the
softmax of the nine one-pixel shifts of each test digit, averaged) included. They meet
the targets of USPS (2.5%, human error) and of the reproduction (1.59%, 32 misses) on
every seed; without the nine views they do not (2.74% and 1.56% means, the last seed of
MNIST-16x16 at 1.74%).

The reproduction's own script, rerun by others, gives 1.99% (lecun1989-repro PR #3); its
1.59% is one final-pass reading of a test error that moves by +-0.4% from pass to pass.

  python train.py --config configs/lenet1989_modern.py:usps --workdir runs/lenet1989m_usps
  # The settings chosen on held-out digits, per dataset: 2.44% (USPS), 1.56% (MNIST-16x16).
  python train.py --config configs/lenet1989_modern.py:usps,tuned --workdir runs/l89m_usps_tuned
  python train.py --config configs/lenet1989_modern.py:mnist16,tuned --workdir runs/l89m_m16_tuned
  # The reproduction's own data, MNIST-16x16 (its figure: 1.59%).
  python train.py --config configs/lenet1989_modern.py:mnist16 --workdir runs/l89m_m16
  # Its linear decay and wrap-around shift, plus EMA and 160 passes: 1.56% mean of 3 seeds.
  python train.py --config configs/lenet1989_modern.py:mnist16 --workdir runs/l89m_m16_ema \
    --config.schedule=linear --config.augment.crop_mode=wrap --config.ema_decay=0.9999 \
    --config.num_epochs=160
  python train.py --config configs/lenet1989_modern.py --workdir runs/lenet1989m   # digits
  python train.py --config configs/lenet1989_modern.py:tiny --workdir /tmp/l89m_tiny

Arguments (comma-separated): ``usps`` trains on ../shared/data/usps (or $SHARED_DIR);
``mnist16`` on MNIST-16x16 (as ``configs/lenet1989.py``); ``tuned`` (with ``usps`` or
``mnist16``: the settings chosen for that data on held-out digits); ``tiny`` (seconds: 128
synthetic images, one pass).
"""

from configs import common
from configs import lenet1989


# ``tuned``: the settings chosen on held-out training digits (README, Results), per
# dataset, on top of the recipe above; each view of ``translate`` is a one-pixel shift,
# with the border filled as the training shifts fill it.
TUNED = {
    # 2,000 of the 7,291 USPS training digits held out: with 2-pixel shifts and EMA,
    # 1.17% at lr 1e-3 and dropout 0.1 against 1.63% at the recipe's 3e-4 and 0.25 (EMA
    # weights, 3 seeds); 0.95% with the nine views.
    "usps": {"augment.crop_padding": 2, "ema_decay": 0.9999, "learning_rate": 1e-3,
             "model_kwargs.h3_dropout": 0.1, "augment.eval_mode": "translate"},
    # The reproduction's linear decay and wrap-around shift, EMA, 160 passes. MNIST-16x16
    # drawn from the first 50,000 MNIST training digits, tested on 2,007 of the other
    # 10,000: 1.66% against the recipe's 2.12% (3 seeds); with the nine views 1.51%
    # against 1.98%.
    "mnist16": {"schedule": "linear", "augment.crop_mode": "wrap", "ema_decay": 0.9999,
                "num_epochs": 160, "augment.eval_mode": "translate"},
}


def get_config(arg=None):
  args = common.parse_arg(arg, tuned=bool, **lenet1989.ARGS)
  c = lenet1989.get_config(",".join(word for word in args if word != "tuned"))
  c.model_kwargs.activation = "relu"
  c.model_kwargs.output_activation = None  # logits for the softmax
  c.model_kwargs.out_bias_init = 0.0
  c.model_kwargs.h3_dropout = 0.25
  c.loss = "cross_entropy"
  c.optimizer = "adamw"
  c.learning_rate = 3e-4
  c.weight_decay = 0.01  # PyTorch's AdamW default, which the reproduction kept
  c.schedule = "cosine"
  c.min_learning_rate = 1e-4  # the reproduction decays 3e-4 to 1e-4, linearly (schedule=linear)
  c.augment.crop_padding = 1  # shift by up to one pixel
  c.batch_size = 1
  c.num_epochs = 80
  if args.get("tuned"):
    data = [d for d in TUNED if args.get(d)]
    if not data:
      raise common.ConfigError("config argument tuned holds settings chosen for usps or "
                               "mnist16; give one of them too (e.g. usps,tuned)")
    c.update_from_flattened_dict(TUNED[data[0]])
    # Nine views of the raw and the averaged weights cost about 1.5 s an evaluation, as
    # much as a training pass: evaluate every tenth pass (and the last) instead of each.
    c.eval_every_epochs = 10
  if args.get("tiny"):
    lenet1989.use_tiny_data(c)
  return c
