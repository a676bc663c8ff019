#include "syncbn/tensor.h"

#include <algorithm>
#include <sstream>

#include "syncbn/error.h"
#include "util/checked.h"
#include "util/format.h"

namespace syncbn {

int64_t shape_numel(const Shape& shape) {
  for (int64_t d : shape) {
    SYNCBN_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  }
  return checked_product(shape, "tensor shape " + shape_str(shape));
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

Storage::Storage(Device device_, std::size_t bytes_)
    : ptr(device_allocate(device_, bytes_)), bytes(bytes_), device(device_) {}

Storage::~Storage() { device_free(device, ptr); }

Tensor Tensor::empty(const Shape& shape, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  const int64_t bytes = checked_mul(t.numel_, sizeof(float), "bytes of tensor " + shape_str(shape));
  try {
    t.storage_ = std::make_shared<Storage>(device, static_cast<std::size_t>(bytes));
  } catch (const Error& e) {
    SYNCBN_FAIL("tensor of shape ", shape_str(shape), " (", byte_size_str(double(bytes)),
                "): ", e.what());
  }
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device device) {
  Tensor t = empty(shape, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values, Device device) {
  SYNCBN_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "from_vector: shape ",
               shape_str(shape), " needs ", shape_numel(shape), " values, got ", values.size());
  Tensor t = empty(shape, device);
  device_copy(t.data(), device, values.data(), Device::cpu(), values.size() * sizeof(float));
  return t;
}

int64_t Tensor::size(int d) const {
  const int n = ndim();
  const int index = d < 0 ? d + n : d;
  SYNCBN_CHECK(index >= 0 && index < n, "dimension ", d, " out of range for shape ",
               shape_str(shape_));
  return shape_[index];
}

Device Tensor::device() const { return storage_ ? storage_->device : Device::cpu(); }

float* Tensor::data() { return storage_ ? static_cast<float*>(storage_->ptr) + offset_ : nullptr; }

const float* Tensor::data() const {
  return storage_ ? static_cast<const float*>(storage_->ptr) + offset_ : nullptr;
}

Tensor Tensor::view(const Shape& shape, int64_t offset) const {
  SYNCBN_CHECK(defined(), "view of an undefined tensor");
  const int64_t n = shape_numel(shape);
  const int64_t capacity = static_cast<int64_t>(storage_->bytes / sizeof(float));
  SYNCBN_CHECK(offset >= 0 && offset_ + offset + n <= capacity, "view ", shape_str(shape),
               " at offset ", offset, " exceeds the storage of ", capacity, " elements");
  Tensor t;
  t.storage_ = storage_;
  t.offset_ = offset_ + offset;
  t.shape_ = shape;
  t.numel_ = n;
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  int64_t known = 1;
  int inferred = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      SYNCBN_CHECK(inferred < 0, "reshape: more than one -1 in ", shape_str(shape));
      inferred = static_cast<int>(i);
    } else {
      known = checked_mul(known, shape[i], "reshape to " + shape_str(shape));
    }
  }
  if (inferred >= 0) {
    SYNCBN_CHECK(known > 0 && numel_ % known == 0, "reshape: cannot reshape ", shape_str(shape_),
                 " to ", shape_str(shape));
    shape[inferred] = numel_ / known;
  }
  SYNCBN_CHECK(shape_numel(shape) == numel_, "reshape: cannot reshape ", shape_str(shape_), " to ",
               shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, device);
  t.memory_format_ = memory_format_;
  t.copy_from(*this);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, device());
  t.memory_format_ = memory_format_;
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  SYNCBN_CHECK(numel_ == src.numel_, "copy_from: ", shape_str(src.shape_), " into ",
               shape_str(shape_));
  device_copy(data(), device(), src.data(), src.device(),
              static_cast<std::size_t>(numel_) * sizeof(float));
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(static_cast<std::size_t>(numel_));
  device_copy(out.data(), Device::cpu(), data(), device(), out.size() * sizeof(float));
  return out;
}

void Tensor::fill_(float value) {
  if (value == 0.0f) return zero_();
  if (device().is_cpu()) {
    std::fill(data(), data() + numel_, value);
  } else {
    // Rare (initialisation only): stage through the host.
    std::vector<float> host(static_cast<std::size_t>(numel_), value);
    device_copy(data(), device(), host.data(), Device::cpu(), host.size() * sizeof(float));
  }
}

void Tensor::zero_() {
  device_set_zero(data(), device(), static_cast<std::size_t>(numel_) * sizeof(float));
}

std::string Tensor::str() const { return "Tensor" + shape_str(shape_) + " " + device().str(); }

}  // namespace syncbn
