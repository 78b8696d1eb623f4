r"""ViT-B/16 on ImageNet-1k from scratch (Dosovitskiy et al. 2020, arXiv 2010.11929).

The paper's recipe (Table 3 and Appendix B.1, "ViT-* ImageNet" row): Adam (b1 0.9,
b2 0.999), batch 4096, base learning rate 3e-3 after a linear warm-up of 10k steps, then
cosine decay, weight decay 0.3, dropout 0.1, 300 epochs at 224x224, gradient clipping at
global norm 1; the head has a tanh pre-logits layer during pre-training (Sec. 3.1).
Trained this way on ImageNet-1k alone ViT-B/16 reaches 77.9% top-1 only after
fine-tuning at 384 (Table 5): without large-scale pre-training, ViT overfits.

Here: the paper's numbers, with these differences:
* Weight decay is decoupled (``adamw``): the paper's JAX code decays as Flax's Adam did,
  ``p -= lr * (adam_update + 0.3 * p)``, which is optax.adamw; Adam with an L2 term
  (our ``adam``) at 0.3 would swamp the gradients. Decay applies to kernels only (not to
  biases, LayerNorm, the class token or E_pos), as in timm and DeiT.
* Gradient clipping at global norm 1 (``grad_clip_norm``), as the paper; ``deit`` keeps it
  off, as DeiT.
* The 10k warm-up steps are ``10_000 * 4096 / 1_281_167`` = 31.97 epochs.
* Augmentation: Inception-style random-resized crops and flips, as the paper; evaluation
  at crop 0.875.

``deit``: the practical ImageNet-1k recipe (Touvron et al. 2020, "Training data-efficient
image transformers & distillation through attention", arXiv 2012.12877; DeiT-B 81.8%
top-1 in 300 epochs without extra data): AdamW, lr 5e-4 x batch / 512 (1e-3 at batch
1024), weight decay 0.05, 5 warm-up epochs, cosine decay to 1e-5, 300 epochs, label
smoothing 0.1, stochastic depth 0.1, no dropout, trunc_normal(0.02) init, no pre-logits
layer; bicubic random-resized crops, RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8, CutMix
1.0, random erasing 0.25 (timm's per-pixel mode). Not applied: DeiT's repeated
augmentation (3 repeats of each image per batch) and its EMA is off, as in DeiT's final
recipe.

ImageNet streams through the host pipeline (``input_pipeline/host.py``).
``model_kwargs.image_size``
follows ``config.image_size`` (a linked field), so ``--config.image_size=N`` sizes the
position embedding too (N must be a multiple of the patch size, 16).

  python train.py --config configs/vit_b16.py --workdir runs/vit_b16
  python train.py --config configs/vit_b16.py:deit --workdir runs/deit_b16
  # Another size: ViT-S/16 with the DeiT recipe (DeiT-S: 79.8%).
  python train.py --config configs/vit_b16.py:deit --config.model=vit_s16 --workdir runs/deit_s16
  # Any dataset, e.g. CIFAR-10 at 32x32 with 4x4 patches (an 8x8 grid):
  python train.py --config configs/vit_b16.py:deit --config.dataset=cifar10 \
      --config.image_size=32 --config.model_kwargs.patch_size=4 --config.batch_size=128 \
      --workdir runs/deit_b4_c10
  # Seconds on a CPU: a 2-block, 32-wide ViT with 4x4 patches on synthetic 32x32 images.
  python train.py --config configs/vit_b16.py:tiny --workdir /tmp/vit_tiny
  python train.py --config configs/vit_b16.py:deit,tiny --workdir /tmp/deit_tiny

Arguments (comma-separated): ``deit``, ``tiny``.
"""

from configs import common

IMAGENET_TRAIN = 1_281_167


def get_config(arg=None):
  args = common.parse_arg(arg, deit=bool, tiny=bool)
  c = common.base()
  c.model = "vit_b16"
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.model_kwargs.image_size = c.get_ref("image_size")
  c.augment.inception_crop = True
  c.augment.flip = True
  c.augment.eval_crop_pct = 0.875
  c.num_epochs = 300
  c.optimizer = "adamw"
  c.b1, c.b2 = 0.9, 0.999
  c.schedule = "cosine"
  c.eval_batch_size = 500
  c.checkpoint_every_epochs = 5
  if args.get("deit"):
    c.batch_size = 1024
    c.learning_rate = 5e-4
    c.lr_base_batch_size = 512  # 1e-3 at batch 1024
    c.weight_decay = 0.05
    c.eps = 1e-8
    c.warmup_epochs = 5.0
    c.min_learning_rate = 1e-5
    c.label_smoothing = 0.1
    c.model_kwargs.drop_path_rate = 0.1
    c.model_kwargs.weight_init = "trunc_normal"
    c.augment.resize_method = "bicubic"
    c.augment.rand_augment = "rand-m9-mstd0.5-inc1"
    c.augment.mixup = 0.8
    c.augment.cutmix = 1.0
    c.augment.random_erasing = 0.25
    c.augment.erase_mode = "pixel"
  else:
    c.batch_size = 4096
    c.learning_rate = 3e-3
    c.weight_decay = 0.3
    c.grad_clip_norm = 1.0
    # 10k warm-up steps as a reference: a --config.batch_size override keeps 10k steps.
    c.warmup_epochs = c.get_ref("batch_size").to_float() * (10_000 / IMAGENET_TRAIN)
    c.model_kwargs.dropout = 0.1
    c.model_kwargs.representation_size = 768
  if args.get("tiny"):
    c.dataset = "synthetic"
    c.synthetic.shape = (32, 32, 3)
    c.synthetic.num_train = 256
    c.synthetic.num_test = 100
    c.image_size = 32  # also the model's (linked), so --config.dataset=... works too
    kwargs = dict(patch_size=4, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
    if not args.get("deit"):
      kwargs["representation_size"] = 32
    for key, value in kwargs.items():
      c.model_kwargs[key] = value
    c.num_epochs = 2
    c.batch_size = 32
    c.eval_batch_size = 100
    c.learning_rate = 1e-3
    c.warmup_epochs = 0.0
    c.augment.inception_crop = False
    c.augment.crop_padding = 4
    c.augment.flip = False  # synthetic class templates are not mirror-symmetric
  return c
