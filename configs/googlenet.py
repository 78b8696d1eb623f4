r"""GoogLeNet (Szegedy et al. 2014, arXiv 1409.4842) with the paper's recipe (Sec. 6).

The paper: asynchronous SGD with momentum 0.9 on DistBelief, "fixed learning rate
schedule (decreasing the learning rate by 4% every 8 epochs)", Polyak averaging for the
final model, auxiliary losses weighted 0.3, dropout 0.4 (0.7 in the auxiliary heads). It
gives no learning rate, batch size, weight decay or run length; Caffe's reference
implementation of this schedule (bvlc_googlenet solver.prototxt) does: lr 0.01 at batch
32, x0.96 every 320,000 iterations (8 epochs), weight decay 2e-4, 10M iterations (250
epochs). Paper: 6.67% top-5 error for an ensemble of 7 models x 144 crops; Caffe's
single bvlc_googlenet reached 68.7% top-1 / 88.9% top-5 (60 epochs, another schedule).

Here: synchronous SGD, batch 256, lr 0.08 (Caffe's 0.01 x 256/32, the linear scaling rule
of Goyal et al. 2017) after a 2-epoch linear warm-up (ours: the unnormalised network at
8x Caffe's rate), x0.96 at every 8th epoch, weight decay 2e-4 on kernels, 250 epochs.
Not reproduced: asynchrony, Polyak averaging, Caffe's doubled learning rate for biases,
and the 144-crop test of the competition entry. Data (Sec. 6), the paper's protocol:
random-resized ("Inception") crops of 8%-100% of the image area with aspect ratio
3/4-4/3, resized to 224, horizontal flips, and "the photometric distortions of Andrew
Howard": brightness, contrast and saturation factors drawn from [0.5, 1.5] (Howard 2013,
arXiv 1312.5402; ``color_jitter=0.5``); test on the centre 224 crop of the image resized
to 256. ImageNet (TFDS ``imagenet2012``) streams through the host pipeline.

  python train.py --config configs/googlenet.py --workdir runs/googlenet_paper
  # torchvision's network (BatchNorm, dropout 0.2), same recipe:
  python train.py --config configs/googlenet.py:torchvision --workdir runs/googlenet
  python train.py --config configs/googlenet.py:epochs=60 --config.dataset=imagenette \
      --workdir runs/googlenet_imagenette
  # Any dataset: the paper's network needs inputs of 80x80 or more, torchvision's 15x15.
  python train.py --config configs/googlenet.py:torchvision --config.dataset=cifar10 \
      --config.image_size=32 --config.batch_size=128 --workdir runs/googlenet_c10
  # Figure 2(a)'s naive modules, without the 1x1 reductions (experiments/googlenet.py):
  python train.py --config configs/googlenet.py --config.model_kwargs.towers=naive \
      --workdir runs/googlenet_naive
  # A few minutes on a CPU: synthetic 80x80 images, one epoch (compilation dominates).
  python train.py --config configs/googlenet.py:tiny --workdir /tmp/googlenet_tiny

Arguments (comma-separated): ``torchvision`` (model ``googlenet`` instead of
``googlenet_paper``), ``epochs=N`` (run length; the decay steps follow), ``tiny``.
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, torchvision=bool, epochs=int, tiny=bool)
  c = common.base()
  if args.get("torchvision"):
    c.model = "googlenet"  # its own dropout (0.2) and aux heads
  else:
    c.model = "googlenet_paper"
    c.model_kwargs.dropout = 0.4
    c.model_kwargs.aux_dropout = 0.7
  c.aux_loss_weight = 0.3
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.inception_crop = True  # 8%-100% of the area, aspect ratio 3/4-4/3
  c.augment.flip = True
  c.augment.color_jitter = 0.5  # Howard's photometric distortions, factors in [0.5, 1.5]
  c.augment.eval_crop_pct = 0.875
  num_epochs = args.get("epochs", 250)
  # x0.96 every 8 epochs: an exponential decay in steps.
  common.imagenet_sgd(c, batch_size=256, learning_rate=0.01 * 256 / 32, weight_decay=2e-4,
                      num_epochs=num_epochs, decay_epochs=range(8, num_epochs, 8),
                      decay_factor=0.96, warmup_epochs=2.0, checkpoint_every_epochs=5)
  if args.get("tiny"):
    # The paper's aux heads need 79x79 or more.
    common.use_tiny_data(c, shape=(80, 80, 3), num_train=128, num_epochs=1)
    c.learning_rate = 0.01
    c.warmup_epochs = 0.0
    c.log_every_steps = 1
  return c
