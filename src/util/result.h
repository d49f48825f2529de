// Errors as values across layer boundaries: an expected-like Result<T>.
//
// C++20 has no std::expected; this is the small subset the layers need. An Error carries the errno the
// /dev/tpmrm0 contract names (ENODEV, ETIME, EINVAL, ...) plus a human-readable message for logs and CLIs.
// A layer with richer failures (the RM's RmError) instantiates Result with its own error type.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tpmrmd {

struct Error {
  int code = 0;  // an errno value
  std::string message;
};

// Builds an Error; `code` is an errno value.
inline Error make_error(int code, std::string message) { return Error{code, std::move(message)}; }

// "strerror-name: message", e.g. "ENODEV: chip unregistered".
std::string describe(const Error& error);

template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(E error) : error_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const E& error() const { assert(!ok()); return *error_; }

 private:
  std::optional<E> error_;
};

}  // namespace tpmrmd
