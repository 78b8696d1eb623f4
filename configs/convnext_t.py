r"""ConvNeXt on ImageNet-1k with the paper's recipe (Liu et al. 2022, arXiv 2201.03545,
Table 5 and Appendix A.1). ConvNeXt-T by default; ``size=s|b|l`` for the others.

The recipe, all of it applied (``configs.common.convnext_recipe``): 300 epochs, batch
4096, AdamW (betas 0.9, 0.999) with lr 4e-3 per 4096 images (the linear scaling rule:
``--config.batch_size`` moves the rate with it), weight decay 0.05 (kernels only, the
official code's exclusion of 1-D parameters), 20 linear warm-up epochs then a cosine
decay to 1e-6, label smoothing 0.1, no gradient clipping; bicubic random-resized crops
(8-100% of the area) and horizontal flips, RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8,
CutMix 1.0, random erasing 0.25, EMA of the weights 0.9999 (both the raw and the EMA
weights are evaluated); stochastic depth 0.1 (S 0.4, B/L 0.5), layer scale init 1e-6,
trunc-normal(0.02) init. Evaluation: bicubic resize to 256 and a centre 224 crop
(crop 0.875). Colour jitter 0.4 is listed by the paper and set here, but timm's
transform (which the official code uses) ignores it when RandAugment is on, and so does
this trainer. Paper top-1 at 224: T 82.1, S 83.1, B 83.8, L 84.3.

Data: TFDS ``imagenet2012`` through the host pipeline (tf.data: decode, crop, flip and
RandAugment on the CPUs; erasing, Mixup / CutMix on the accelerator). ImageNet must be
prepared first: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
<data_dir>/downloads/manual and run ``python tools/prepare_data.py imagenet2012
--data_dir <data_dir>``
(the error says so too). ``--config.dataset=imagenette`` or an npz dataset works as well.

  python train.py --config configs/convnext_t.py --workdir runs/convnext_t \
      --config.data_dir=/data/tfds
  python train.py --config configs/convnext_t.py:size=s --workdir runs/convnext_s
  # Batch 4096 on one GPU: 32 micro-batches of 128 per step (same updates, slower).
  python train.py --config configs/convnext_t.py --workdir runs/convnext_t_1gpu \
      --config.grad_accum_steps=32
  # Batch 1024 on fewer devices: lr 1e-3 (4e-3 x 1024 / 4096), by the scaling rule.
  python train.py --config configs/convnext_t.py:batch=1024 --workdir runs/convnext_t_b1024
  python train.py --config configs/convnext_t.py:size=b,batch=2048 --workdir runs/convnext_b
  # Seconds on a CPU: a narrow 4-block ConvNeXt on synthetic 32x32 images, the whole
  # recipe (EMA 0.9 so that two epochs move it).
  python train.py --config configs/convnext_t.py:tiny --workdir /tmp/convnext_tiny

Arguments (comma-separated): ``size=t|s|b|l`` (model and the paper's drop-path rate),
``batch=N`` (batch size; the learning rate follows), ``tiny``.
"""

from configs import common

# The paper's stochastic-depth rate per size (Appendix A.1).
_SIZES = {"t": 0.1, "s": 0.4, "b": 0.5, "l": 0.5}


def get_config(arg=None):
  args = common.parse_arg(arg, size=tuple(_SIZES), batch=int, tiny=bool)
  size = args.get("size", "t")
  c = common.base()
  c.model = f"convnext_{size}"
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.eval_batch_size = 500
  common.convnext_recipe(c, batch_size=args.get("batch", 4096))
  c.model_kwargs.drop_path_rate = _SIZES[size]
  c.model_kwargs.layer_scale_init = 1e-6
  c.model_kwargs.head_init_scale = 1.0
  c.checkpoint_every_epochs = 5
  if args.get("tiny"):
    common.use_tiny_data(c, shape=(32, 32, 3))  # 8x8 after the stem, 1x1 in stage 4
    c.model_kwargs.dims = (8, 16, 32, 64)
    c.model_kwargs.depths = (1, 1, 1, 1)
    c.batch_size = args.get("batch", 32)
    c.learning_rate = 1e-3
    c.lr_base_batch_size = 0
    c.warmup_epochs = 0.0
    c.min_learning_rate = 0.0
    c.ema_decay = 0.9
  return c
