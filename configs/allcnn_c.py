r"""All-CNN-C (Springenberg et al. 2015) on CIFAR-10; ``:maxpool`` gives the paper's
model C with max-pooling instead of stride-2 convolutions, for the comparison.

The paper's recipe (Sec. 3.2): SGD with momentum 0.9, the learning rate chosen from
{0.25, 0.1, 0.05, 0.01} on validation data and multiplied by 0.1 after epochs 200, 250
and 300, 350 epochs, weight decay 0.001, dropout 0.2 on the input and 0.5 after each
downsampling layer. Its data were whitened and contrast-normalised (ZCA); we use
per-channel standardisation instead (no ZCA in this pipeline). "With augmentation"
(its best, 7.25% error) adds horizontal flips and translations of up to 5 pixels:
``:augment``. The paper reports 9.08% error for All-CNN-C without augmentation and
9.74% for model C (Table 3). Batch size is not given; we use 128.

  python train.py --config configs/allcnn_c.py --workdir runs/allcnn_c
  python train.py --config configs/allcnn_c.py:maxpool --workdir runs/allcnn_c_maxpool
  python train.py --config configs/allcnn_c.py:augment --workdir runs/allcnn_c_aug
  # Max-pooling against strided convolution (get_sweep below), both models, one command
  # (on GPUs: --runner gpus; 3 seeds: --grid seed=0,1,2):
  python launch/sweep.py --config configs/allcnn_c.py --sweep_dir runs/allcnn_pooling

Arguments (comma-separated): ``maxpool``, ``augment``, ``tiny`` (seconds, synthetic).
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, maxpool=bool, augment=bool, tiny=bool)
  c = common.base()
  c.model = "allcnn_c_maxpool" if args.get("maxpool") else "allcnn_c"
  c.dataset = "cifar10"
  c.num_epochs = 350
  c.batch_size = 128
  c.eval_batch_size = 500
  c.optimizer = "sgd"
  c.momentum = 0.9
  c.learning_rate = 0.05
  c.weight_decay = 1e-3
  c.schedule = "step"
  c.decay_epochs = (200, 250, 300)
  c.decay_factor = 0.1
  c.checkpoint_every_epochs = 10
  if args.get("augment"):
    c.augment.crop_padding = 5
    c.augment.flip = True
  if args.get("tiny"):
    c.dataset = "synthetic"
    c.synthetic.shape = (16, 16, 3)
    c.synthetic.num_train = 128
    c.synthetic.num_test = 64
    c.model_kwargs.width = 8
    c.num_epochs = 1
    c.batch_size = 32
    c.eval_batch_size = 64
    c.decay_epochs = ()
  return c


def get_sweep(arg=None):
  """The paper's comparison: All-CNN-C (stride-2 convolutions) against model C
  (max-pooling), the same recipe otherwise; ``augment`` and ``tiny`` apply to both."""
  del arg  # get_config reads it
  return [{"name": "allcnn_c_strided", "model": "allcnn_c"},
          {"name": "allcnn_c_maxpool", "model": "allcnn_c_maxpool"}]
