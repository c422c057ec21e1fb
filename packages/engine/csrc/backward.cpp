// backward(): back-propagate upstream gradients of score()'s outputs into the flat gradient buffer.
//
// The caller (TypeScript objectives) computes d loss / d output for every scored row: sumLogp, KL
// and pooled hidden states. For each chunk of the scored batch we run
//   torch::autograd::grad(outputs, params, upstream)
// which returns parameter gradients instead of accumulating them into param.grad. That lets the
// chunks of one batch run on several threads at once while the sum stays deterministic: chunk c
// runs on worker c % W; worker 0 adds its chunks straight into flatGrad, the others into their own
// buffer, and those buffers are added to flatGrad in worker order once every worker is done.
#include <torch/csrc/autograd/autograd.h>

#include <stdexcept>

#include "ops.h"

namespace mpo {

namespace {

// Upstream gradient rows of one chunk, in the chunk's row order, as a tensor like `like`.
at::Tensor gatherRows(const std::vector<double>& g, const std::vector<int64_t>& index, const at::Tensor& like) {
  std::vector<double> v(index.size());
  for (size_t j = 0; j < index.size(); ++j) v[j] = g[index[j]];
  return at::tensor(v, at::kDouble).to(like.options());
}
at::Tensor gatherRows(const std::vector<float>& g, const std::vector<int64_t>& index, int64_t width,
                      const at::Tensor& like) {
  at::Tensor t = at::empty({static_cast<int64_t>(index.size()), width}, at::kFloat);
  float* p = t.data_ptr<float>();
  for (size_t j = 0; j < index.size(); ++j)
    std::copy(g.begin() + index[j] * width, g.begin() + (index[j] + 1) * width, p + j * width);
  return t.to(like.options());
}

}  // namespace

void backward(Model& m, GraphHandle& h, const GradRequest& g) {
  const int64_t n = h.n, D = m.cfg.hidden;
  auto checkLen = [&](size_t got, int64_t want, const char* what) {
    if (got != 0 && static_cast<int64_t>(got) != want)
      throw std::invalid_argument(std::string("backward: grads.") + what + " has " + std::to_string(got) +
                                  " values, expected " + std::to_string(want));
  };
  checkLen(g.sumLogp.size(), n, "sumLogp");
  checkLen(g.kl.size(), n, "kl");
  checkLen(g.last.size(), n * D, "lastHidden");
  checkLen(g.mean.size(), n * D, "meanHidden");
  checkLen(g.meanUnmasked.size(), n * D, "meanUnmaskedHidden");
  if (!h.chunks.empty()) {
    const auto& c0 = h.chunks[0];
    auto need = [](bool given, const at::Tensor& t, const char* what, const char* how) {
      if (given && !t.defined())
        throw std::invalid_argument(std::string("backward: grads.") + what + " given but score() did not compute it (" +
                                    how + ")");
    };
    need(!g.sumLogp.empty(), c0.sumLogp, "sumLogp", "lmHead: false");
    need(!g.kl.empty(), c0.kl, "kl", "no reference model");
    need(!g.last.empty(), c0.last, "lastHidden", "pooling 'last' not requested");
    need(!g.mean.empty(), c0.mean, "meanHidden", "pooling 'mean' not requested");
    need(!g.meanUnmasked.empty(), c0.meanUnmasked, "meanUnmaskedHidden", "pooling 'meanUnmasked' not requested");
  }
  m.syncGradFromHost();

  std::vector<at::Tensor> inputs;
  for (auto& p : m.params) inputs.push_back(p.compute);

  const bool cuda = !m.device.is_cpu();
  const int workers = std::min<int>(cuda ? 1 : std::max(1, m.threads), std::max<int>(1, h.chunks.size()));
  // Per-worker accumulation buffers (flat fp32, like flatGrad); worker 0 uses flatGrad itself.
  // The extra buffers are kept on the model and zeroed lazily by their own worker (in parallel).
  std::vector<at::Tensor> bufs(workers);
  bufs[0] = m.flatGrad;
  if (static_cast<int>(m.workerGrads.size()) < workers) m.workerGrads.resize(workers);
  for (int w = 1; w < workers; ++w) {
    if (!m.workerGrads[w].defined()) m.workerGrads[w] = at::empty_like(m.flatGrad);
    bufs[w] = m.workerGrads[w];
  }
  std::vector<char> used(workers, 0);

  runParallel(workers, static_cast<int64_t>(h.chunks.size()), m.threads, false, [&](int w, int64_t ci) {
    ChunkGraph& c = h.chunks[ci];
    std::vector<at::Tensor> outs, grads;
    auto add = [&](const at::Tensor& out, at::Tensor grad) {
      if (!out.defined() || !out.requires_grad()) return;
      outs.push_back(out);
      grads.push_back(std::move(grad));
    };
    if (!g.sumLogp.empty()) add(c.sumLogp, gatherRows(g.sumLogp, c.index, c.sumLogp));
    if (!g.kl.empty()) add(c.kl, gatherRows(g.kl, c.index, c.kl));
    if (!g.last.empty()) add(c.last, gatherRows(g.last, c.index, D, c.last));
    if (!g.mean.empty()) add(c.mean, gatherRows(g.mean, c.index, D, c.mean));
    if (!g.meanUnmasked.empty()) add(c.meanUnmasked, gatherRows(g.meanUnmasked, c.index, D, c.meanUnmasked));
    if (!outs.empty()) {
      if (w > 0 && !used[w]) bufs[w].zero_();
      auto pg = torch::autograd::grad(outs, inputs, grads, /*retain_graph=*/false, /*create_graph=*/false,
                                      /*allow_unused=*/true);
      at::NoGradGuard ng;
      for (size_t i = 0; i < pg.size(); ++i) {
        if (!pg[i].defined()) continue;
        const Param& p = m.params[i];
        bufs[w].narrow(0, p.offset, p.numel).view(p.shape).add_(pg[i]);
      }
      used[w] = 1;
    }
    c = ChunkGraph();  // free this chunk's graph and activations now
  });
  // flatGrad += buffers in worker order, each slice of the flat range on its own thread.
  bool any = false;
  for (int w = 1; w < workers; ++w) any |= used[w] != 0;
  if (!any) return;
  const int64_t P = m.flatGrad.numel();
  runParallel(workers, workers, 1, false, [&](int, int64_t t) {
    const int64_t i0 = P * t / workers, i1 = P * (t + 1) / workers;
    at::Tensor dst = m.flatGrad.narrow(0, i0, i1 - i0);
    for (int w = 1; w < workers; ++w)
      if (used[w]) dst.add_(bufs[w].narrow(0, i0, i1 - i0));
  });
}

}  // namespace mpo
