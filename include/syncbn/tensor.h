#pragma once
// Tensor: float32, contiguous, a shape and a device, reference-counted storage.
// Copies of a Tensor share storage (like torch.Tensor handles); clone() copies the data.
// view() gives a tensor over part of the same storage, which is how gradient buckets and
// packed communication buffers avoid copies.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "syncbn/device.h"

namespace syncbn {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);

// NCHW is the layout of record; kChannelsLast (NHWC) is a flag that kernels honour.
enum class MemoryFormat { kContiguous, kChannelsLast };

struct Storage {
  Storage(Device device, std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* ptr = nullptr;
  std::size_t bytes = 0;
  Device device;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values,
                            Device device = Device::cpu());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Size of dimension d; negative d counts from the end.
  int64_t size(int d) const;
  int64_t numel() const { return numel_; }
  Device device() const;
  MemoryFormat memory_format() const { return memory_format_; }
  void set_memory_format(MemoryFormat format) { memory_format_ = format; }

  // Pointer to the first element, in the tensor's device memory.
  float* data();
  const float* data() const;

  // A tensor of `shape` over this tensor's storage, starting `offset` elements into it.
  Tensor view(const Shape& shape, int64_t offset = 0) const;
  // Same storage, new shape with the same numel; one dimension may be -1.
  Tensor reshape(Shape shape) const;

  Tensor to(Device device) const;  // a copy on `device` (shares storage when already there)
  Tensor clone() const;
  void copy_from(const Tensor& src);  // same numel, any devices
  std::vector<float> to_vector() const;

  void fill_(float value);
  void zero_();

  std::string str() const;  // "Tensor[64, 10] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  int64_t numel_ = 0;
  MemoryFormat memory_format_ = MemoryFormat::kContiguous;
};

}  // namespace syncbn
