// Raw tensor bytes in and out of safetensors files. The JSON headers are parsed and written by the
// TypeScript side (which also checks names and shapes); here we only move bytes, converting
// between the file's dtype (F32/F16/BF16) and the model's flat fp32 buffers.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>

#include "ops.h"

namespace mpo {

namespace {

at::ScalarType fileDtype(const std::string& s) {
  if (s == "F32") return at::kFloat;
  if (s == "F16") return at::kHalf;
  if (s == "BF16") return at::kBFloat16;
  throw std::invalid_argument("unsupported safetensors dtype " + s + " (expected F32, F16 or BF16)");
}

at::Tensor& bufferOf(Model& m, Buffer b) {
  switch (b) {
    case Buffer::Param:
      return m.flatParam;
    case Buffer::ExpAvg:
      ensureOptimizerState(m);
      return m.expAvg;
    case Buffer::ExpAvgSq:
      ensureOptimizerState(m);
      return m.expAvgSq;
  }
  throw std::logic_error("bad buffer");
}

std::string sysError(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

void readTensors(Model& m, const std::vector<ReadEntry>& entries) {
  std::map<std::string, int> fds;
  auto closeAll = [&] {
    for (auto& kv : fds) ::close(kv.second);
  };
  try {
    std::vector<uint8_t> buf;
    for (const auto& e : entries) {
      const at::ScalarType dt = fileDtype(e.dtype);
      if (e.nbytes != e.numel * static_cast<int64_t>(c10::elementSize(dt)))
        throw std::invalid_argument("tensor byte size does not match its shape in " + e.file);
      at::Tensor& dst = bufferOf(m, e.target);
      if (e.offset < 0 || e.offset + e.numel > dst.numel()) throw std::out_of_range("tensor outside the model buffer");
      int& fd = fds[e.file];
      if (fd == 0) {
        fd = ::open(e.file.c_str(), O_RDONLY);
        if (fd < 0) {
          fds.erase(e.file);
          throw std::runtime_error(sysError("cannot open", e.file));
        }
      }
      buf.resize(e.nbytes);
      int64_t got = 0;
      while (got < e.nbytes) {
        ssize_t k = ::pread(fd, buf.data() + got, e.nbytes - got, e.fileOffset + got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) throw std::runtime_error(k == 0 ? "unexpected end of file in " + e.file : sysError("cannot read", e.file));
        got += k;
      }
      at::Tensor src = at::from_blob(buf.data(), {e.numel}, at::TensorOptions().dtype(dt));
      at::NoGradGuard ng;
      dst.narrow(0, e.offset, e.numel).copy_(src);  // converts to fp32 (and moves to the device)
    }
  } catch (...) {
    closeAll();
    throw;
  }
  closeAll();
  m.weightsChanged();
}

void writeSafetensors(Model& m, const std::string& path, const std::string& header,
                      const std::vector<WriteEntry>& entries) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(sysError("cannot create", tmp));
  auto fail = [&](const std::string& msg) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw std::runtime_error(msg);
  };
  const uint64_t hlen = header.size();
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(hlen >> (8 * i));  // little endian
  if (std::fwrite(le, 1, 8, f) != 8 || std::fwrite(header.data(), 1, hlen, f) != hlen) fail(sysError("cannot write", tmp));
  for (const auto& e : entries) {
    at::Tensor& src = bufferOf(m, e.source);
    if (e.offset < 0 || e.offset + e.numel > src.numel()) fail("tensor outside the model buffer");
    at::Tensor t = src.narrow(0, e.offset, e.numel).to(at::kCPU).to(fileDtype(e.dtype)).contiguous();
    const size_t nb = t.numel() * t.element_size();
    if (std::fwrite(t.data_ptr(), 1, nb, f) != nb) fail(sysError("cannot write", tmp));
  }
  if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) fail(sysError("cannot flush", tmp));
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(sysError("cannot close", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(sysError("cannot rename to", path));
  }
}

}  // namespace mpo
