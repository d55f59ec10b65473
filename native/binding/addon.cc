// Thin node-addon-api layer over the native core. It takes already-checked plain arguments from
// src/native.ts and returns >= 0 or a negative errno, which src/errors.ts turns into Node errors.
#include <napi.h>

#include "vls_common.h"

namespace {

Napi::Value Version(const Napi::CallbackInfo &info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("major", VLS_VERSION_MAJOR);
  o.Set("minor", VLS_VERSION_MINOR);
  return o;
}

Napi::Value ErrName(const Napi::CallbackInfo &info) {
  int e = info[0].As<Napi::Number>().Int32Value();
  return Napi::String::New(info.Env(), vls_err_name(e));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("errName", Napi::Function::New(env, ErrName));
  return exports;
}

}  // namespace

NODE_API_MODULE(vls, Init)
