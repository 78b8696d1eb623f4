"""One of two processes feeding the host pipeline: each reads only its own share.

Run by ``tests/test_host_pipeline.py`` as two processes of two CPU devices each::

  python tests/multiprocess_host_check.py PORT PROCESS_ID

Each process reads its half of a 16-example source (``Dataset.shard``), builds global
batches with ``host.to_global`` (``jax.make_array_from_process_local_data``), and checks:
the rows on its own devices come only from its half; the global training batch holds both
halves; one evaluation pass covers every example exactly once. Prints ``ok``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

NUM_EXAMPLES = 16


def main(port: int, process_id: int) -> None:
  jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
  from input_pipeline import host  # pylint: disable=g-import-not-at-top
  from training import parallel  # pylint: disable=g-import-not-at-top

  mesh = parallel.create_mesh(1)
  assert mesh.size == 4 and jax.local_device_count() == 2
  # Label = index, so every row says where it came from; process p reads i % 2 == p.
  source = host.fake_jpeg_dataset(NUM_EXAMPLES, height_range=(20, 30),
                                  width_range=(20, 30), num_classes=NUM_EXAMPLES,
                                  num_distinct=4)
  source = source.enumerate().map(lambda i, ex: {"image": ex["image"], "label": i})

  def local_labels(array):
    return np.concatenate([np.asarray(s.data) for s in array.addressable_shards])

  ops = host.default_train_ops(8)[:2]  # decode > random_resized_crop(8), no flip
  train = host.to_global(host.train_dataset(source, global_batch_size=8, image_size=8,
                                            seed=0, ops=ops), mesh)
  for _ in range(3):
    batch = next(train)
    assert batch["images"].shape == (8, 8, 8, 3) and batch["labels"].shape == (8,)
    mine = local_labels(batch["labels"])
    assert len(mine) == 4 and np.all(mine % 2 == process_id), mine
    every = multihost_utils.process_allgather(batch["labels"], tiled=True)
    assert sorted(every % 2) == [0] * 4 + [1] * 4, every

  seen = []
  for batch in host.to_global(host.eval_dataset(source, global_batch_size=4,
                                                ops=host.default_eval_ops(8)), mesh):
    mine = local_labels(batch["labels"])[local_labels(batch["mask"])]
    assert np.all(mine % 2 == process_id), mine
    labels, mask = multihost_utils.process_allgather((batch["labels"], batch["mask"]),
                                                     tiled=True)
    seen.extend(labels[mask].tolist())
  assert sorted(seen) == list(range(NUM_EXAMPLES)), seen
  print("ok", flush=True)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]))
