// oneDNN's convolutions as XLA:CPU custom calls (the XLA FFI), for kernels/onednn.py.
//
// Three handlers, one per direction of a 2-D convolution on NHWC activations and HWIO
// kernels (flax's layouts, so nothing is transposed on the JAX side):
//   cnn_onednn_conv_fwd          y  = conv(x, w)
//   cnn_onednn_conv_bwd_data     dx = conv_backward_data(dy, w)     (x's shape from the result)
//   cnn_onednn_conv_bwd_weights  dw = conv_backward_weights(x, dy)  (w's shape from the result)
// Attributes: strides, padding_lo, padding_hi, dilation (lax's rhs_dilation: 1 = dense), all
// two int64 each, and groups (lax's feature_group_count). float32 only.
//
// oneDNN picks its own kernel and weight layout (`format_tag::any`: on AVX-512, the direct
// brgemm kernels PyTorch's CPU build runs); the kernel is reordered from HWIO into that layout
// and, for the weight gradient, back. Primitives are built once per shape and attribute set
// and kept in a cache; each call's temporary memory (reordered weights, oneDNN's scratchpad)
// is a buffer of the calling thread, kept and grown as needed (XLA:CPU's FFI scratch
// allocator refuses), so concurrent calls share nothing but the cache.

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum class Direction { kForward, kBackwardData, kBackwardWeights };

struct Geometry {
  memory::dims src, weights, dst, strides, dilation, pad_l, pad_r;
  int64_t groups;
};

struct Entry {
  memory::desc src, weights_user, dst;  // the caller's layouts: NHWC, NHWC, HWIO
  memory::desc weights_prim;            // the primitive's kernel layout
  memory::desc scratchpad;
  dnnl::primitive prim;
  dnnl::reorder reorder;  // HWIO -> weights_prim, or (weight gradient) back; empty if equal
  bool needs_reorder;
};

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

std::string Key(Direction d, const Geometry& g) {
  std::string key = std::to_string(static_cast<int>(d));
  for (const memory::dims* v : {&g.src, &g.weights, &g.dst, &g.strides, &g.dilation, &g.pad_l,
                                &g.pad_r}) {
    key += '|';
    for (int64_t x : *v) key += std::to_string(x) + ',';
  }
  return key + '|' + std::to_string(g.groups);
}

// oneDNN's dims are logical (N, C, H, W) and (G, O/G, I/G, KH, KW); the tags say how the
// caller lays them out in memory.
std::unique_ptr<Entry> Build(Direction d, const Geometry& g) {
  using tag = memory::format_tag;
  using dt = memory::data_type;
  auto& eng = Engine();
  auto e = std::make_unique<Entry>();
  e->src = memory::desc(g.src, dt::f32, tag::nhwc);
  e->dst = memory::desc(g.dst, dt::f32, tag::nhwc);
  e->weights_user = memory::desc(g.weights, dt::f32, g.groups > 1 ? tag::hwigo : tag::hwio);
  memory::desc weights_any(g.weights, dt::f32, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto fwd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, e->src,
      weights_any, e->dst, g.strides, g.dilation, g.pad_l, g.pad_r, attr);
  // The two backward directions take the same arguments, the forward one as a hint.
  auto backward = [&](auto tag) {
    using Prim = decltype(tag);
    return typename Prim::primitive_desc(eng, dnnl::algorithm::convolution_direct, e->src,
                                         weights_any, e->dst, g.strides, g.dilation,
                                         g.pad_l, g.pad_r, fwd, attr);
  };
  auto use = [&](const auto& pd, const memory::desc& weights, dnnl::primitive prim) {
    e->weights_prim = weights;
    e->scratchpad = pd.scratchpad_desc();
    e->prim = std::move(prim);
  };
  switch (d) {
    case Direction::kForward:
      use(fwd, fwd.weights_desc(), dnnl::convolution_forward(fwd));
      break;
    case Direction::kBackwardData: {
      auto pd = backward(dnnl::convolution_backward_data());
      use(pd, pd.weights_desc(), dnnl::convolution_backward_data(pd));
      break;
    }
    case Direction::kBackwardWeights: {
      auto pd = backward(dnnl::convolution_backward_weights());
      use(pd, pd.diff_weights_desc(), dnnl::convolution_backward_weights(pd));
      break;
    }
  }
  e->needs_reorder = e->weights_prim != e->weights_user;
  if (e->needs_reorder) {
    e->reorder = d == Direction::kBackwardWeights
                     ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->weights_prim, eng,
                                                                   e->weights_user))
                     : dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->weights_user, eng,
                                                                   e->weights_prim));
  }
  return e;
}

// Convolutions of fewer multiply-adds than this run on the calling thread alone: at batch
// 1 (LeNet-1989, 20-40 thousand a call) waking OpenMP's other threads for each call made
// a run 4x slower than XLA's convolutions, and single-threaded 1.6x faster. Primitives are
// built and run with the same thread count, and which count is a function of the shape.
constexpr int64_t kOneThreadBelow = int64_t{1} << 18;

// For its scope, OpenMP's thread count of the calling thread set to 1 (if `on`).
class OneThread {
 public:
  explicit OneThread(bool on) : on_(on), saved_(omp_get_max_threads()) {
    if (on_) omp_set_num_threads(1);
  }
  ~OneThread() {
    if (on_) omp_set_num_threads(saved_);
  }

 private:
  bool on_;
  int saved_;
};

// A calling thread's temporary buffer, 64-byte aligned, grown to the largest request.
class Buffer {
 public:
  ~Buffer() { std::free(data_); }
  void* Get(size_t size) {
    if (size > size_) {
      std::free(data_);
      size_ = (size + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, size_);
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

const Entry& Lookup(Direction d, const Geometry& g) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<std::string, std::unique_ptr<Entry>>();
  std::string key = Key(d, g);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it == cache->end()) it = cache->emplace(key, Build(d, g)).first;
  return *it->second;
}

ffi::Error Pair(ffi::Span<const int64_t> v, const char* name, memory::dims* out, int64_t minus) {
  if (v.size() != 2) return ffi::Error::InvalidArgument(std::string(name) + " needs 2 values");
  *out = {v[0] - minus, v[1] - minus};
  return ffi::Error::Success();
}

// x: (N, H, W, C); w: (KH, KW, C/G, O); y: (N, OH, OW, O).
ffi::Error Run(Direction d, ffi::Span<const int64_t> strides,
               ffi::Span<const int64_t> padding_lo, ffi::Span<const int64_t> padding_hi,
               ffi::Span<const int64_t> dilation, int64_t groups, ffi::Span<const int64_t> x,
               ffi::Span<const int64_t> w, ffi::Span<const int64_t> y, void* x_ptr,
               void* w_ptr, void* y_ptr) {
  if (x.size() != 4 || w.size() != 4 || y.size() != 4)
    return ffi::Error::InvalidArgument("onednn conv: operands must be rank 4 (NHWC, HWIO)");
  if (groups < 1 || x[3] % groups != 0 || w[3] % groups != 0 || w[2] * groups != x[3])
    return ffi::Error::InvalidArgument("onednn conv: channels do not match the groups");
  Geometry g;
  g.groups = groups;
  g.src = {x[0], x[3], x[1], x[2]};
  g.dst = {y[0], y[3], y[1], y[2]};
  g.weights = groups > 1 ? memory::dims{groups, w[3] / groups, w[2], w[0], w[1]}
                         : memory::dims{w[3], w[2], w[0], w[1]};
  for (auto err : {Pair(strides, "strides", &g.strides, 0),
                   Pair(padding_lo, "padding_lo", &g.pad_l, 0),
                   Pair(padding_hi, "padding_hi", &g.pad_r, 0),
                   Pair(dilation, "dilation", &g.dilation, 1)}) {
    if (!err.success()) return err;
  }
  const int64_t macs = y[0] * y[1] * y[2] * y[3] * w[0] * w[1] * w[2];
  OneThread small(macs < kOneThreadBelow);
  try {
    const Entry& e = Lookup(d, g);
    auto& eng = Engine();
    dnnl::stream stream(eng);
    memory src(e.src, eng, x_ptr), dst(e.dst, eng, y_ptr), weights(e.weights_user, eng, w_ptr);
    memory weights_prim = weights;
    thread_local Buffer weights_buffer, scratchpad_buffer;
    if (e.needs_reorder) {
      void* buf = weights_buffer.Get(e.weights_prim.get_size());
      if (!buf) return ffi::Error::Internal("onednn conv: out of memory for the kernel");
      weights_prim = memory(e.weights_prim, eng, buf);
    }
    memory pad;
    if (e.scratchpad.get_size() > 0) {
      void* buf = scratchpad_buffer.Get(e.scratchpad.get_size());
      if (!buf) return ffi::Error::Internal("onednn conv: out of memory for its scratchpad");
      pad = memory(e.scratchpad, eng, buf);
    }
    switch (d) {
      case Direction::kForward:
        if (e.needs_reorder) e.reorder.execute(stream, weights, weights_prim);
        e.prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights_prim},
                                {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}});
        break;
      case Direction::kBackwardData:  // src is dx, dst is dy
        if (e.needs_reorder) e.reorder.execute(stream, weights, weights_prim);
        e.prim.execute(stream, {{DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_WEIGHTS, weights_prim},
                                {DNNL_ARG_DIFF_SRC, src}, {DNNL_ARG_SCRATCHPAD, pad}});
        break;
      case Direction::kBackwardWeights:  // weights is dw
        e.prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dst},
                                {DNNL_ARG_DIFF_WEIGHTS, weights_prim},
                                {DNNL_ARG_SCRATCHPAD, pad}});
        if (e.needs_reorder) e.reorder.execute(stream, weights_prim, weights);
        break;
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x,
                   ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                   ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                   ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                   int64_t groups) {
  return Run(Direction::kForward, strides, padding_lo, padding_hi, dilation, groups,
             x.dimensions(), w.dimensions(), y->dimensions(), x.untyped_data(),
             w.untyped_data(), y->untyped_data());
}

ffi::Error BackwardData(ffi::Buffer<ffi::F32> dy,
                        ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> dx,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                        ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                        int64_t groups) {
  return Run(Direction::kBackwardData, strides, padding_lo, padding_hi, dilation,
             groups, dx->dimensions(), w.dimensions(), dy.dimensions(), dx->untyped_data(),
             w.untyped_data(), dy.untyped_data());
}

ffi::Error BackwardWeights(ffi::Buffer<ffi::F32> x,
                           ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dw,
                           ffi::Span<const int64_t> strides,
                           ffi::Span<const int64_t> padding_lo,
                           ffi::Span<const int64_t> padding_hi,
                           ffi::Span<const int64_t> dilation, int64_t groups) {
  return Run(Direction::kBackwardWeights, strides, padding_lo, padding_hi, dilation,
             groups, x.dimensions(), dw->dimensions(), dy.dimensions(), x.untyped_data(),
             dw->untyped_data(), dy.untyped_data());
}

}  // namespace

#define CNN_ONEDNN_BIND()                                                               \
  ffi::Ffi::Bind()                                                                      \
      .Arg<ffi::Buffer<ffi::F32>>()                                                     \
      .Arg<ffi::Buffer<ffi::F32>>()                                                     \
      .Ret<ffi::Buffer<ffi::F32>>()                                                     \
      .Attr<ffi::Span<const int64_t>>("strides")                                        \
      .Attr<ffi::Span<const int64_t>>("padding_lo")                                     \
      .Attr<ffi::Span<const int64_t>>("padding_hi")                                     \
      .Attr<ffi::Span<const int64_t>>("dilation")                                       \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnn_onednn_conv_fwd, Forward, CNN_ONEDNN_BIND());
XLA_FFI_DEFINE_HANDLER_SYMBOL(cnn_onednn_conv_bwd_data, BackwardData, CNN_ONEDNN_BIND());
XLA_FFI_DEFINE_HANDLER_SYMBOL(cnn_onednn_conv_bwd_weights, BackwardWeights, CNN_ONEDNN_BIND());
