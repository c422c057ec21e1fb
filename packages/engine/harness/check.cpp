// mpo-engine-check: the engine's C++ core (csrc/ without the N-API layer) driven from the command
// line, for the GPU check (scripts/gpu-check.sh). The GPU machine has PyTorch, nvcc and CMake but no
// Node, so this links the same model/scoring/backward/optimizer code the addon runs and takes its
// inputs from a plain-text job file written by harness/driver.py:
//
//   config <llama|qwen2> vocab hidden inter layers heads kvHeads headDim eps theta bias tie
//   weights <model.safetensors>                          then, per tensor:
//   tensor <name> <F32|F16|BF16> <absolute file offset> <nbytes>
//   init <seed> <stdev>                                  (random weights instead of a checkpoint)
//   seq <group> <promptLen> <n> <token>*n                (groups: g, tc, tr, dc, dr)
//
//   mpo-engine-check <job> score  [opts]   every `seq`: sumLogp, tokens, last/mean hidden (JSON)
//   mpo-engine-check <job> mpo    [opts]   --steps MPO steps on (tc,tr) target and (dc,dr) dominant pairs
//   mpo-engine-check <job> bench  [opts]   config-M-style step timing (same step as src/bench.ts)
//   opts: --device cpu|cuda:N --dtype float32|bfloat16|float16 --threads N --steps N --lr F
//         --beta F --w F --grads <file> --params <file>  (raw fp32 gradients before / parameters
//         after the first step, for comparing devices)
//
// MPO (Zhao et al., ACL 2025; objectives/src/methods/mpo.ts): with RG = avg log p(chosen) - avg
// log p(rejected), L1 = (1/n) sum_i (beta RG_t,i - RG_d,i)^2 with RG_d from the frozen reference,
// L2 = (1/(2nH)) sum over dominant chosen+rejected ||h_policy - h_ref||^2 (mean-pooled final-norm
// hidden states), L = L1 + w L2.
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../csrc/blas.h"
#include "../csrc/ops.h"

namespace {

struct Seq {
  std::string group;
  int64_t promptLen = 0;
  std::vector<int32_t> tokens;
};

struct Job {
  mpo::Config cfg;
  std::string weights;
  std::vector<mpo::ReadEntry> tensors;  // offset/numel filled in against the model's layout
  bool init = false;
  uint64_t seed = 0;
  double stdev = 0.02;
  std::vector<Seq> seqs;
};

Job readJob(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read job file " + path);
  Job j;
  std::string line;
  int lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    std::istringstream ls(line);
    std::string kw;
    if (!(ls >> kw) || kw[0] == '#') continue;
    if (kw == "config") {
      std::string arch;
      int bias = 0, tie = 0;
      auto& c = j.cfg;
      ls >> arch >> c.vocab >> c.hidden >> c.inter >> c.layers >> c.heads >> c.kvHeads >> c.headDim >> c.eps >>
          c.theta >> bias >> tie;
      c.arch = arch == "qwen2" ? mpo::Arch::Qwen2 : mpo::Arch::Llama;
      c.bias = bias != 0;
      c.tie = tie != 0;
    } else if (kw == "weights") {
      ls >> j.weights;
    } else if (kw == "tensor") {
      mpo::ReadEntry e;
      std::string name;
      ls >> name >> e.dtype >> e.fileOffset >> e.nbytes;
      e.file = name;  // the tensor's name until resolveTensors() puts the file path here
      j.tensors.push_back(e);
    } else if (kw == "init") {
      j.init = true;
      ls >> j.seed >> j.stdev;
    } else if (kw == "seq") {
      Seq s;
      int64_t n = 0;
      ls >> s.group >> s.promptLen >> n;
      s.tokens.resize(n);
      for (auto& t : s.tokens) ls >> t;
      j.seqs.push_back(std::move(s));
    } else {
      throw std::runtime_error(path + ":" + std::to_string(lineNo) + ": unknown keyword '" + kw + "'");
    }
    if (ls.fail()) throw std::runtime_error(path + ":" + std::to_string(lineNo) + ": malformed '" + kw + "' line");
  }
  return j;
}

std::map<std::string, std::string> readOpts(int argc, char** argv, int from) {
  std::map<std::string, std::string> o;
  for (int i = from; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw std::runtime_error("expected --option, got " + k);
    o[k.substr(2)] = argv[i + 1];
  }
  return o;
}
std::string opt(const std::map<std::string, std::string>& o, const std::string& k, const std::string& d) {
  auto it = o.find(k);
  return it == o.end() ? d : it->second;
}

std::unique_ptr<mpo::Model> makeModel(const Job& j, const std::string& device, const std::string& dtype, int threads) {
  auto m = std::make_unique<mpo::Model>(j.cfg, mpo::parseDevice(device), mpo::parseDtype(dtype), threads);
  if (j.init) {
    m->initRandom(j.seed, j.stdev);
    return m;
  }
  std::map<std::string, const mpo::HfTensor*> byName;
  for (const auto& t : m->hfTensors) byName[t.name] = &t;
  std::vector<mpo::ReadEntry> es;
  for (auto e : j.tensors) {
    auto it = byName.find(e.file);
    if (it == byName.end()) throw std::runtime_error("checkpoint tensor '" + e.file + "' is not in the model layout");
    e.offset = it->second->offset;
    e.numel = it->second->numel;
    e.file = j.weights;
    es.push_back(e);
    byName.erase(it);
  }
  if (!byName.empty()) throw std::runtime_error("checkpoint lacks tensor '" + byName.begin()->first + "'");
  mpo::readTensors(*m, es);
  return m;
}

mpo::ScoreRequest request(const std::vector<const Seq*>& seqs) {
  mpo::ScoreRequest r;
  r.offsets.push_back(0);
  for (const Seq* s : seqs) {
    r.tokens.insert(r.tokens.end(), s->tokens.begin(), s->tokens.end());
    r.offsets.push_back(static_cast<int64_t>(r.tokens.size()));
    r.promptLens.push_back(s->promptLen);
  }
  return r;
}

std::vector<const Seq*> group(const Job& j, const std::string& g) {
  std::vector<const Seq*> out;
  for (const auto& s : j.seqs)
    if (s.group == g) out.push_back(&s);
  return out;
}

void sync(const mpo::Model& m) {
  if (m.device.is_cuda()) torch::cuda::synchronize();
}

void writeRaw(const at::Tensor& t, const std::string& path) {
  at::Tensor h = t.to(at::kCPU, at::kFloat).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(h.data_ptr<float>()), h.numel() * sizeof(float));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <typename T>
std::string jsonArray(const T* p, size_t n) {
  std::ostringstream s;
  s.precision(9);
  s << '[';
  for (size_t i = 0; i < n; ++i) s << (i ? "," : "") << p[i];
  s << ']';
  return s.str();
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --- score: the golden fixture's quantities for every sequence
void cmdScore(const Job& j, mpo::Model& m) {
  std::vector<const Seq*> all;
  for (const auto& s : j.seqs) all.push_back(&s);
  auto req = request(all);
  req.poolLast = req.poolMean = true;
  auto r = mpo::score(m, req);
  const int64_t D = r.hidden;
  std::ostringstream o;
  o.precision(12);
  o << "{\"rows\":[";
  for (int64_t i = 0; i < r.n; ++i) {
    o << (i ? "," : "") << "{\"group\":\"" << all[i]->group << "\",\"sumLogp\":" << r.sumLogp[i]
      << ",\"tokens\":" << r.tokens[i] << ",\"lastHidden\":" << jsonArray(r.last.data() + i * D, D)
      << ",\"meanHidden\":" << jsonArray(r.mean.data() + i * D, D) << "}";
  }
  o << "]}";
  std::cout << o.str() << std::endl;
}

// --- mpo: training steps with the MPO loss
struct RefScores {
  std::vector<double> rgd;   // per pair
  std::vector<float> hidden;  // [2n, H]: dominant chosen rows, then rejected rows
};

RefScores scoreReference(mpo::Model& ref, const std::vector<const Seq*>& dc, const std::vector<const Seq*>& dr) {
  std::vector<const Seq*> d(dc);
  d.insert(d.end(), dr.begin(), dr.end());
  auto req = request(d);
  req.poolMean = true;
  auto r = mpo::score(ref, req);
  const size_t n = dc.size();
  RefScores out;
  for (size_t i = 0; i < n; ++i)
    out.rgd.push_back(r.sumLogp[i] / r.tokens[i] - r.sumLogp[n + i] / r.tokens[n + i]);
  out.hidden = r.mean;
  return out;
}

// One MPO step on the policy: returns the loss (before the update); the gradients end up in m.flatGrad.
double mpoForwardBackward(mpo::Model& m, const Job& j, const RefScores& ref, double beta, double w) {
  auto tc = group(j, "tc"), tr = group(j, "tr"), dc = group(j, "dc"), dr = group(j, "dr");
  const size_t n = tc.size();
  std::vector<const Seq*> t(tc);
  t.insert(t.end(), tr.begin(), tr.end());
  auto treq = request(t);
  treq.grad = true;
  auto ts = mpo::score(m, treq);
  double l1 = 0;
  mpo::GradRequest tg;
  tg.sumLogp.assign(2 * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const double rgt = ts.sumLogp[i] / ts.tokens[i] - ts.sumLogp[n + i] / ts.tokens[n + i];
    const double e = beta * rgt - ref.rgd[i];
    l1 += e * e / n;
    // dL1/dRG_t = 2 e beta / n; dRG_t/dsumLogp = +1/tokens (chosen), -1/tokens (rejected)
    tg.sumLogp[i] = 2 * e * beta / n / ts.tokens[i];
    tg.sumLogp[n + i] = -2 * e * beta / n / ts.tokens[n + i];
  }
  mpo::backward(m, *m.takeHandle(ts.handle), tg);

  std::vector<const Seq*> d(dc);
  d.insert(d.end(), dr.begin(), dr.end());
  auto dreq = request(d);
  dreq.grad = true;
  dreq.lmHead = false;
  dreq.poolMean = true;
  auto ds = mpo::score(m, dreq);
  const double H = static_cast<double>(ds.hidden), scale = 1.0 / (2.0 * n * H);
  double l2 = 0;
  mpo::GradRequest dg;
  dg.mean.resize(ds.mean.size());
  for (size_t k = 0; k < ds.mean.size(); ++k) {
    const double diff = static_cast<double>(ds.mean[k]) - ref.hidden[k];
    l2 += diff * diff * scale;
    dg.mean[k] = static_cast<float>(w * 2 * diff * scale);  // d(w L2)/dh
  }
  mpo::backward(m, *m.takeHandle(ds.handle), dg);
  return l1 + w * l2;
}

void cmdMpo(const Job& j, mpo::Model& m, mpo::Model& ref, const std::map<std::string, std::string>& o) {
  const int steps = std::stoi(opt(o, "steps", "1"));
  const double beta = std::stod(opt(o, "beta", "1.0")), w = std::stod(opt(o, "w", "1.0"));
  mpo::StepOptions so;
  so.lr = std::stod(opt(o, "lr", "1e-5"));
  const size_t n = group(j, "tc").size();
  if (n == 0 || group(j, "tr").size() != n || group(j, "dc").size() != n || group(j, "dr").size() != n)
    throw std::runtime_error("mpo needs the same number (> 0) of tc, tr, dc and dr sequences");
  const RefScores rs = scoreReference(ref, group(j, "dc"), group(j, "dr"));
  std::vector<double> losses, norms, secs;
  for (int s = 0; s < steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    m.flatGrad.zero_();
    losses.push_back(mpoForwardBackward(m, j, rs, beta, w));
    if (s == 0 && o.count("grads")) writeRaw(m.flatGrad, o.at("grads"));
    norms.push_back(mpo::adamwStep(m, so));
    if (s == 0 && o.count("params")) writeRaw(m.flatParam, o.at("params"));
    sync(m);
    secs.push_back(seconds(t0));
  }
  std::cout << "{\"losses\":" << jsonArray(losses.data(), losses.size())
            << ",\"gradNorms\":" << jsonArray(norms.data(), norms.size())
            << ",\"stepSeconds\":" << jsonArray(secs.data(), secs.size()) << "}" << std::endl;
}

// --- bench: src/bench.ts's step (2 target sequences through the LM head and 2 dominant sequences to
// the mean-pooled hidden state per pair, fixed upstream gradients, AdamW), random tokens.
void cmdBench(mpo::Model& m, const std::map<std::string, std::string>& o) {
  const int pairs = std::stoi(opt(o, "pairs", "8")), steps = std::stoi(opt(o, "steps", "5"));
  const int64_t T = std::stoll(opt(o, "seq", "1024")), V = m.cfg.vocab, D = m.cfg.hidden;
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  std::vector<Seq> target(2 * pairs), source(2 * pairs);
  for (auto* b : {&target, &source})
    for (auto& s : *b) {
      s.promptLen = T / 4;  // response = last 3/4, as src/bench.ts
      s.tokens.resize(T);
      for (auto& t : s.tokens) t = tok(rng);
    }
  std::vector<const Seq*> tp, sp;
  for (auto& s : target) tp.push_back(&s);
  for (auto& s : source) sp.push_back(&s);
  mpo::GradRequest gt, gs;
  for (int i = 0; i < 2 * pairs; ++i) gt.sumLogp.push_back(u(rng));
  for (int64_t i = 0; i < 2 * pairs * D; ++i) gs.mean.push_back(static_cast<float>(u(rng) * 1e-2));
  mpo::StepOptions so;
  so.lr = 1e-5;
  auto step = [&] {
    m.flatGrad.zero_();
    auto tr = request(tp);
    tr.grad = true;
    auto t = mpo::score(m, tr);
    mpo::backward(m, *m.takeHandle(t.handle), gt);
    auto sr = request(sp);
    sr.grad = true;
    sr.lmHead = false;
    sr.poolMean = true;
    auto s = mpo::score(m, sr);
    mpo::backward(m, *m.takeHandle(s.handle), gs);
    mpo::adamwStep(m, so);
    sync(m);
  };
  step();  // warm-up: allocator, RoPE tables, kernels
  std::vector<double> secs;
  for (int i = 0; i < steps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    secs.push_back(seconds(t0));
  }
  std::vector<double> sorted(secs);
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                        : (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;
  const double tokens = 4.0 * pairs * T;
  std::cout << "{\"tokensPerSec\":" << tokens / med << ",\"secondsPerStep\":" << med
            << ",\"stepSeconds\":" << jsonArray(secs.data(), secs.size()) << ",\"tokensPerStep\":" << tokens
            << ",\"numParameters\":" << m.numParameters() << "}" << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: mpo-engine-check <job file> score|mpo|bench|info [--device D] [--dtype X] ...\n";
    return 2;
  }
  try {
    const std::string cmd = argv[2];
    const auto o = readOpts(argc, argv, 3);
    // As the addon does at load: OpenBLAS single-threaded inside each worker thread.
    using SetFn = void (*)(int);
    if (auto fn = reinterpret_cast<SetFn>(mpo::findSymbol("openblas_set_num_threads"))) fn(1);
    if (cmd == "info") {
#ifdef MPO_WITH_CUDA
      const bool cudaBuild = true;
#else
      const bool cudaBuild = false;
#endif
      std::cout << "{\"torchVersion\":\"" << TORCH_VERSION << "\",\"cudaBuild\":" << (cudaBuild ? "true" : "false")
                << ",\"cudaDevices\":" << torch::cuda::device_count() << ",\"gemm\":\"" << mpo::gemmBackend()
                << "\"}" << std::endl;
      return 0;
    }
    const Job j = readJob(argv[1]);
    const std::string device = opt(o, "device", "cpu"), dtype = opt(o, "dtype", "float32");
    const int threads = std::stoi(opt(o, "threads", "1"));
    auto m = makeModel(j, device, dtype, threads);
    if (cmd == "score") {
      cmdScore(j, *m);
    } else if (cmd == "mpo") {
      auto ref = makeModel(j, device, dtype, threads);
      cmdMpo(j, *m, *ref, o);
    } else if (cmd == "bench") {
      cmdBench(*m, o);
    } else {
      throw std::runtime_error("unknown command '" + cmd + "'");
    }
  } catch (const c10::Error& e) {
    std::cerr << "mpo-engine-check: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mpo-engine-check: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
