r"""LeCun (1989), "Generalization and network design strategies": one of the five networks
(``net=1`` ... ``net=5``, default 5) trained on 320 digits, 32 of each class.

The paper trained on 320 mouse-drawn 16x16 digits and tested on 160. We draw a fixed,
class-balanced 320-digit subset of USPS's training split (the same for every run and
seed; input_pipeline.train_subset) and test on the full USPS test split, 2,007 digits, so
our test error has a smaller spread than the paper's, on harder, real handwriting.

Recipe, in the spirit of configs/lenet1989.py: tanh units, squared error on +-1 targets
(tanh outputs), plain SGD after every example (batch 1, no momentum), constant rate 0.1,
30 passes, inputs in [-1, 1]; outputs start at -1 (``out_bias_init``). (The paper also
describes a second-order backprop with a diagonal Hessian, which training/ does not have.)

Light tuning, on 2,000 held-out USPS *training* digits (never the test split), seeds 0-2,
mean validation error after 30 passes, nets 1..5:
  lr 0.03: 12.5 / 13.4 / 20.2 / 17.5 / 12.4 %     lr 0.1: 12.6 / 12.8 / 17.5 / 17.1 / 11.9 %
0.1 is as good or better for every net but net-1 (+0.1, within noise): at 0.03 net-3 is
still under-fitted after 30 passes. 60 passes, lr 0.01 / 0.05 and ``scaled_tanh`` (seed 0
only) changed no conclusion.

Measured (tools/lecun1989_study.py, 3 seeds, mean +- std test error, 2-core shared CPU):

  | data (train/test)  | net-1      | net-2      | net-3      | net-4      | net-5      |
  | USPS (320/2007)    | 15.9 +-0.4 | 17.3 +-0.9 | 20.8 +-3.6 | 20.8 +-0.7 | 15.8 +-0.6 |
  | digits (320/450)   | 7.2 +-0.3  | 7.6 +-1.7  | 7.4 +-2.1  | 8.0 +-1.8  | 5.8 +-0.7  |
  | paper (320/160)    | 20.0       | 13.0       | 11.5       | 6.0        | 1.6        |

On USPS net-5 ties net-1 and nets 3-4 trail: the paper's ordering is not reproduced.
Each study takes about 3 min.

  # One network (seconds on a CPU):
  python train.py --config configs/lecun1989_nets.py:net=3 --workdir runs/lecun1989_net3
  # All five, 3 seeds, with a table and a plot:
  python tools/lecun1989_study.py --data usps --seeds 3

Arguments (comma-separated): ``net=N`` (1..5), ``digits`` (scikit-learn's digits, offline:
8x8 upsampled to 16x16, 1,347 train / 450 test, also cut to 320), ``tiny`` (a few seconds:
40 examples, 1 pass; synthetic data unless ``digits`` is given; for tests).
"""

import os

from configs import common

NUM_NETS = 5


def usps_path() -> str:
  return os.path.join(os.environ.get("SHARED_DIR", "../shared"), "data/usps/usps.npz")


def get_config(arg=None):
  args = common.parse_arg(arg)
  net = int(args.get("net", NUM_NETS))
  if not 1 <= net <= NUM_NETS:
    raise ValueError(f"net={net}: the paper's networks are net=1 ... net={NUM_NETS}")
  c = common.base()
  c.model = f"lecun1989_net{net}"
  c.model_kwargs.out_bias_init = -1.0  # outputs start at the target of 9 classes in 10
  c.dataset = "digits" if args.get("digits") else "npz:" + usps_path()
  c.num_train_examples = 320  # as in the paper: 32 per class
  c.normalization = "symmetric"  # [-1, 1], background -1
  c.loss = "mse"
  c.optimizer = "sgd"
  c.momentum = 0.0
  c.learning_rate = 0.1
  c.schedule = "constant"
  c.batch_size = 1  # an update after every example
  c.num_epochs = 30
  c.eval_batch_size = 256
  c.eval_every_epochs = 5
  c.checkpoint_every_epochs = 10
  if args.get("tiny"):
    if not args.get("digits"):
      c.dataset = "synthetic"
      c.synthetic.shape = (16, 16, 1)
      c.synthetic.num_train = 64
      c.synthetic.num_test = 64
    c.num_train_examples = 40
    c.num_epochs = 1
    c.eval_batch_size = 64
    c.eval_every_epochs = 1
    c.checkpoint_every_epochs = 1
  return c
