// Thin layer over the native core: node-addon-api, except the per-message data path (read, write,
// writev), which is plain V8 callbacks. JS (src/native.ts, src/worker.ts) checks and normalises
// every argument; this file takes plain values and returns >= 0 or a negative errno, which
// src/errors.ts turns into Node-style errors.
//
// One Worker per JS environment (the main thread and each worker_threads thread): it owns a
// vls_app, a uv_poll on the worker's eventfd (IO events: the hot path, one syscall to reset it and
// no nested epoll), a uv_poll on the app's fd (control sockets), and calls JS once per batch of
// events, passing a reused Float64Array of records [type, events, handle, handle2, err] and, only when some event
// carries metadata (accept / connected), an array of Buffers.
#include <napi.h>
#include <uv.h>
#include <v8.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "vls_app.h"
#include "vls_session.h"

namespace {

constexpr int kBatch = 256;
constexpr int kRec = 5;
constexpr uint64_t kMinWindowNs = 2000;  // an auto window shrunk below this is no window
constexpr int kSpinsPerTurn = 4;         // yields (each followed by a look) per loop turn while polling

// Blocks that bulk reads land in, each handed to JS as the memory of a Buffer and taken back when
// V8 frees that Buffer (on whichever thread frees it: the deleter may run on a GC helper thread).
// The garbage collector frees such Buffers in batches tens of MiB apart; given back to malloc,
// each batch is freed memory that malloc trims and the next reads fault back in, page by page
// (14-36 thousand faults per GiB received, up to a tenth of a bulk receiver's time, measured on
// one CPU). Kept here instead, a block is reused as it is. Free blocks beyond kMaxFree go back to
// malloc; a second after reads stop (in every thread), all free blocks do, and so do those freed
// later, until reads start again: an idle process keeps none.
class RecvPool {
 public:
  static constexpr size_t kBlock = 64 * 1024;  // READ_CHUNK in src/session-handle.ts
  static constexpr size_t kMaxFree = 1024;  // 64 MiB

  static void *Take() {
    takes_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> g(mu_);
      keep_ = true;
      if (!free_.empty()) {
        void *b = free_.back();
        free_.pop_back();
        return b;
      }
    }
    return std::malloc(kBlock);
  }

  static void Give(void *b) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (keep_ && free_.size() < kMaxFree) {
        free_.push_back(b);
        return;
      }
    }
    std::free(b);
  }

  static void Deleter(void *data, size_t, void *) { Give(data); }

  static uint64_t Takes() { return takes_.load(std::memory_order_relaxed); }

  static size_t FreeBlocks() {
    std::lock_guard<std::mutex> g(mu_);
    return free_.size();
  }

  // Gives every free block back to malloc, and those freed later too, until the next Take().
  static void Release() {
    std::vector<void *> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      keep_ = false;
      out.swap(free_);
    }
    for (void *b : out) std::free(b);
  }

 private:
  // Never destroyed: a Buffer may be freed during exit, after static destructors would have run.
  static inline std::mutex &mu_ = *new std::mutex;
  static inline std::vector<void *> &free_ = *new std::vector<void *>;
  static inline bool keep_ = false;  // under mu_
  static inline std::atomic<uint64_t> takes_{0};
};

inline uint64_t ToHandle(const Napi::Value &v) {
  return static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
}

class Worker : public Napi::ObjectWrap<Worker> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Worker",
                       {
                           InstanceMethod("attach", &Worker::Attach),
                           InstanceMethod("detach", &Worker::Detach),
                           InstanceMethod("listen", &Worker::Listen),
                           InstanceMethod("connect", &Worker::Connect),
                           InstanceMethod("shutdown", &Worker::Shutdown),
                           InstanceMethod("close", &Worker::Close),
                           InstanceMethod("reset", &Worker::Reset),
                           InstanceMethod("info", &Worker::Info),
                           InstanceMethod("stats", &Worker::Stats),
                           InstanceMethod("sessions", &Worker::Sessions),
                           InstanceMethod("setRef", &Worker::SetRef),
                           InstanceMethod("pump", &Worker::PumpJs),
                           InstanceMethod("statReply", &Worker::StatReply),
                       });
  }

  explicit Worker(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Worker>(info) {}
  ~Worker() override { Teardown(); }

 private:
  vls_app_t *app_ = nullptr;
  uv_poll_t *poll_ = nullptr;     // the app fd: control sockets
  uv_poll_t *io_poll_ = nullptr;  // the worker's eventfd: IO events
  uv_timer_t *timer_ = nullptr;
  uv_idle_t *idle_ = nullptr;     // busy polling (VLS_POLL_USEC): keeps the loop from sleeping
  // Busy polling (VLS_POLL_USEC). Fixed: poll for cap_ns_ after each batch of events. Auto (the
  // default): the window adapts as KVM's halt polling does - a wake-up that came sooner than the
  // cap after the last event grows the window to cover such a gap next time; a gap longer than
  // the cap halves it (down to 0: no polling). So steady traffic whose messages come closer than
  // the cap is polled for and needs no wake-ups, and sparse traffic costs no spinning.
  bool poll_auto_ = false;
  uint64_t cap_ns_ = 0;           // the fixed window, or the auto window's upper bound; 0: off
  uint64_t window_ns_ = 0;        // the window in force
  uint64_t last_activity_ = 0;    // when the last batch of events was delivered (the loop may
                                  // have blocked since then unless busy_: no polling in force)
  uint64_t poll_hits_ = 0;        // events found by polling (no wake-up was needed)
  uint64_t poll_misses_ = 0;      // windows that ran out before an event came
  bool busy_ = false;
  uv_timer_t *pool_timer_ = nullptr;  // gives the receive pool's free blocks back once reads stop
  uint64_t pool_takes_ = 0;           // RecvPool::Takes() when the timer was started
  uint64_t pool_reads_ = 0;           // readChunk calls that returned a Buffer
  v8::Global<v8::Object> buffer_proto_;  // Buffer.prototype, for the Buffers readChunk makes
  Napi::FunctionReference on_events_;
  Napi::Reference<Napi::Float64Array> batch_;
  Napi::AsyncContext *ctx_ = nullptr;
  bool refed_ = false;
  bool in_pump_ = false;
  std::vector<vls_app_evt_t> evs_ = std::vector<vls_app_evt_t>(kBatch);

  static void CleanupHook(void *arg) { static_cast<Worker *>(arg)->Teardown(); }

  void Teardown() {
    if (!app_) return;
    napi_remove_env_cleanup_hook(Env(), CleanupHook, this);
    uv_close(reinterpret_cast<uv_handle_t *>(poll_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
    uv_close(reinterpret_cast<uv_handle_t *>(io_poll_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
    uv_close(reinterpret_cast<uv_handle_t *>(timer_), [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    uv_close(reinterpret_cast<uv_handle_t *>(idle_), [](uv_handle_t *h) { delete reinterpret_cast<uv_idle_t *>(h); });
    // A release still due is not coming any more: give the free blocks back now (another thread
    // that still reads takes new ones).
    if (uv_is_active(reinterpret_cast<uv_handle_t *>(pool_timer_))) RecvPool::Release();
    uv_close(reinterpret_cast<uv_handle_t *>(pool_timer_), [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    pool_timer_ = nullptr;
    poll_ = nullptr;
    io_poll_ = nullptr;
    timer_ = nullptr;
    idle_ = nullptr;
    busy_ = false;
    vls_app_destroy(app_);
    app_ = nullptr;
    delete ctx_;
    ctx_ = nullptr;
    on_events_.Reset();
    batch_.Reset();
    buffer_proto_.Reset();
  }

  // attach(dir, fifoSize, segmentSize, mqSize, secret: Buffer(32), onEvents, pollUsec) -> index or -errno
  Napi::Value Attach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (app_) return Napi::Number::New(env, -EISCONN);
    std::string dir = info[0].As<Napi::String>().Utf8Value();
    vls_app_cfg_t cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.wrk.fifo_size = info[1].As<Napi::Number>().Uint32Value();
    cfg.wrk.segment_size = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
    cfg.wrk.mq_size = info[3].As<Napi::Number>().Uint32Value();
    cfg.wrk.name = "node-vls";
    auto secret = info[4].As<Napi::Buffer<uint8_t>>();
    std::memcpy(cfg.secret, secret.Data(), std::min<size_t>(secret.Length(), VLS_SECRET_LEN));
    int rv = vls_app_attach_ns(&app_, &cfg, dir.c_str());
    if (rv < 0) return Napi::Number::New(env, rv);
    int efd = vls_app_split_eventfd(app_);
    if (efd < 0) {
      vls_app_destroy(app_);
      app_ = nullptr;
      return Napi::Number::New(env, efd);
    }
    cap_ns_ = static_cast<uint64_t>(info[6].As<Napi::Number>().DoubleValue() * 1000.0);
    poll_auto_ = info[7].As<Napi::Boolean>().Value();
    window_ns_ = poll_auto_ ? 0 : cap_ns_;
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    uv_poll_init(loop, poll_, vls_app_fd(app_));
    poll_->data = this;
    uv_poll_start(poll_, UV_READABLE, OnPoll);
    uv_unref(reinterpret_cast<uv_handle_t *>(poll_));
    io_poll_ = new uv_poll_t;
    uv_poll_init(loop, io_poll_, efd);
    io_poll_->data = this;
    uv_poll_start(io_poll_, UV_READABLE, OnIoPoll);
    uv_unref(reinterpret_cast<uv_handle_t *>(io_poll_));
    idle_ = new uv_idle_t;
    uv_idle_init(loop, idle_);
    idle_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t *>(idle_));
    timer_ = new uv_timer_t;
    uv_timer_init(loop, timer_);
    timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t *>(timer_));
    pool_timer_ = new uv_timer_t;
    uv_timer_init(loop, pool_timer_);
    pool_timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t *>(pool_timer_));
    on_events_ = Napi::Persistent(info[5].As<Napi::Function>());
    batch_ = Napi::Persistent(Napi::Float64Array::New(env, kBatch * kRec));
    ctx_ = new Napi::AsyncContext(env, "node-vls");
    napi_add_env_cleanup_hook(env, CleanupHook, this);
    InstallHotPath(info.This().As<Napi::Object>());
    return Napi::Number::New(env, vls_worker_index(vls_app_worker(app_)));
  }

  Napi::Value Detach(const Napi::CallbackInfo &info) {
    Teardown();
    return info.Env().Undefined();
  }

  static void OnPoll(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    static_cast<Worker *>(h->data)->Pump(0);
  }

  static void OnIoPoll(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    Worker *w = static_cast<Worker *>(h->data);
    // A busy-polling worker leaves the eventfd to us (a late wake-up from a producer that saw us
    // asleep, or nothing): reset it so the poll does not fire again.
    if (w->busy_ && w->app_) vls_worker_clear_eventfd(vls_app_worker(w->app_));
    w->Pump(VLS_APP_POLL_IO_ONLY);
  }

  static void OnTimer(uv_timer_t *h) { static_cast<Worker *>(h->data)->Pump(0); }

  static constexpr uint64_t kPoolIdleMs = 1000;
  static constexpr uint64_t kPoolLookEvery = 8;  // 512 KiB of 64 KiB reads

  void ArmPoolRelease() {
    pool_takes_ = RecvPool::Takes();
    uv_timer_start(pool_timer_, OnPoolTimer, kPoolIdleMs, 0);
  }

  // A second after the last look: reads still going on (in any thread) look again later; else
  // the free blocks go back to malloc.
  static void OnPoolTimer(uv_timer_t *h) {
    Worker *w = static_cast<Worker *>(h->data);
    if (RecvPool::Takes() != w->pool_takes_) return w->ArmPoolRelease();
    RecvPool::Release();
  }

  // Busy polling: each turn of the loop looks at the queue (shared memory, no syscall) while the
  // window after the last activity lasts; then the worker announces sleep and the loop may block.
  static void OnIdle(uv_idle_t *h) {
    Worker *w = static_cast<Worker *>(h->data);
    if (!w->app_) return;
    if (w->PumpIfWork()) return;
    if (uv_hrtime() - w->last_activity_ < w->window_ns_) {
      // Nothing yet: give the CPU to whoever else wants it (the peer itself, when both share a
      // CPU; with a CPU to ourselves this returns at once), and look again a few times before
      // letting the loop turn (each turn is a zero-timeout epoll_wait and the other phases).
      for (int k = 0; k < kSpinsPerTurn; k++) {
        sched_yield();
        if (w->PumpIfWork()) return;
      }
      return;
    }
    w->busy_ = false;
    w->poll_misses_++;
    uv_idle_stop(w->idle_);
    vls_worker_set_busy_poll(vls_app_worker(w->app_), 0);
    w->Pump(VLS_APP_POLL_IO_ONLY);  // announces sleep, with the re-check
  }

  // Events waiting in the queue (a look at shared memory, no syscall): hand them over.
  bool PumpIfWork() {
    if (!vls_worker_has_work(vls_app_worker(app_))) return false;
    Pump(VLS_APP_POLL_IO_ONLY);
    return true;
  }

  // Drain the app and hand the events to JS, one call per batch.
  void Pump(unsigned flags) {
    if (!app_ || in_pump_) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    in_pump_ = true;
    int delivered = 0;
    for (int round = 0; round < 64 && app_; round++) {
      int n = vls_app_poll_ex(app_, evs_.data(), kBatch, flags);
      if (n <= 0) break;
      delivered += n;
      Napi::Float64Array batch = batch_.Value();
      double *d = batch.Data();
      Napi::Value metas = env.Undefined();
      for (int i = 0; i < n; i++) {
        const vls_app_evt_t &e = evs_[i];
        d[i * kRec + 0] = e.type;
        d[i * kRec + 1] = e.events;
        d[i * kRec + 2] = static_cast<double>(e.handle);
        d[i * kRec + 3] = static_cast<double>(e.handle2);
        d[i * kRec + 4] = e.err;
        if (e.meta_len) {
          if (metas.IsUndefined()) metas = Napi::Array::New(env);
          metas.As<Napi::Array>().Set(i, Napi::Buffer<uint8_t>::Copy(env, e.meta, e.meta_len));
        }
      }
      // Raw call: during environment teardown JS cannot run any more, and that must not be
      // fatal (node-addon-api would try to throw). The events are dropped with the environment.
      napi_value argv[3] = {Napi::Number::New(env, n), metas, batch};
      napi_value result;
      napi_status st = napi_make_callback(env, *ctx_, Value(), on_events_.Value(), 3, argv, &result);
      if (st != napi_ok) {
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (!pending) break;  // JS cannot run any more (environment teardown)
        napi_value exc;
        napi_get_and_clear_last_exception(env, &exc);
        // An exception thrown by a JS handler: uncaught, as from a socket's callback. An
        // application that survives it ('uncaughtException') still gets the events that remain:
        // they were taken off the queue, and nothing would announce them again.
        napi_fatal_exception(env, exc);
      }
      if (n < kBatch) break;
    }
    in_pump_ = false;
    if (delivered && cap_ns_ && app_) {
      uint64_t now = uv_hrtime();
      if (busy_) {
        poll_hits_++;
      } else if (poll_auto_) {
        uint64_t gap = now - last_activity_;
        if (gap <= cap_ns_) {
          uint64_t want = std::max(window_ns_ * 2, gap + gap / 4);
          window_ns_ = std::min(cap_ns_, want);
        } else {
          window_ns_ = window_ns_ / 2 < kMinWindowNs ? 0 : window_ns_ / 2;
        }
      }
      last_activity_ = now;
      if (!busy_ && window_ns_) {
        busy_ = true;
        vls_worker_set_busy_poll(vls_app_worker(app_), 1);
        uv_idle_start(idle_, OnIdle);
      }
    }
    // Events that found a peer's queue full are retried shortly; nothing else needs a timer.
    if (app_ && vls_worker_deferred(vls_app_worker(app_)) > 0) uv_timer_start(timer_, OnTimer, 1, 0);
  }

  // statReply(conn, serial, json: string) -> 0 or -errno
  Napi::Value StatReply(const Napi::CallbackInfo &info) {
    if (!app_) return Napi::Number::New(info.Env(), -EBADF);
    std::string json = info[2].As<Napi::String>().Utf8Value();
    int rv = vls_app_stat_reply(app_, info[0].As<Napi::Number>().Uint32Value(),
                                info[1].As<Napi::Number>().Uint32Value(), json.data(),
                                static_cast<uint32_t>(json.size()));
    return Napi::Number::New(info.Env(), rv);
  }

  Napi::Value PumpJs(const Napi::CallbackInfo &info) {
    Pump(0);
    return info.Env().Undefined();
  }

  vls_worker_t *W() { return app_ ? vls_app_worker(app_) : nullptr; }

  Napi::Value Listen(const Napi::CallbackInfo &info) {
    if (!app_) return Napi::Number::New(info.Env(), -EBADF);
    uint64_t lh = 0;
    int rv = vls_app_listen(app_, info[0].As<Napi::Number>().Uint32Value(), ToHandle(info[1]), &lh);
    return Napi::Number::New(info.Env(), rv < 0 ? rv : static_cast<double>(lh));
  }

  // connect(peerSockPath, listenerHandle, tag, meta: Buffer, out: Float64Array) -> handle or
  // -errno; out[0] = 1 when the session is connected now (no CONNECTED event follows), 0 when it
  // waits for the first hello exchange with that worker.
  Napi::Value Connect(const Napi::CallbackInfo &info) {
    if (!app_) return Napi::Number::New(info.Env(), -EBADF);
    std::string path = info[0].As<Napi::String>().Utf8Value();
    auto meta = info[3].As<Napi::Buffer<uint8_t>>();
    auto out = info[4].As<Napi::Float64Array>();
    if (out.ElementLength() < 1) return Napi::Number::New(info.Env(), -EINVAL);
    uint64_t ch = 0;
    int rv = vls_app_connect(app_, path.c_str(), ToHandle(info[1]), ToHandle(info[2]), meta.Data(),
                             static_cast<uint32_t>(meta.Length()), &ch);
    out[0] = rv == 1 ? 1 : 0;
    return Napi::Number::New(info.Env(), rv < 0 ? rv : static_cast<double>(ch));
  }

  // The data path - read, write, writev, several calls per message - is plain V8 callbacks rather
  // than node-addon-api methods: an ObjectWrap method costs ~10 N-API calls (unwrap, argument
  // info, typed-array info, number conversions), ~0.5 us here, against ~40 ns for these. They are
  // set as own properties of this object when it attaches, each bound to this Worker through an
  // External; they reach the worker only while it is attached (-EBADF after detach).
  //
  // N-API and V8 agree on what a napi_value is (a v8::Local's slot): that is how these functions
  // are handed to napi_set_named_property.
  void InstallHotPath(Napi::Object self) {
    v8::Isolate *iso = v8::Isolate::GetCurrent();
    v8::Local<v8::Context> ctx = iso->GetCurrentContext();
    v8::Local<v8::External> data = v8::External::New(iso, this);
    auto put = [&](const char *name, v8::FunctionCallback cb) {
      v8::Local<v8::Function> fn = v8::FunctionTemplate::New(iso, cb, data)->GetFunction(ctx).ToLocalChecked();
      napi_value v;
      static_assert(sizeof v == sizeof fn, "napi_value is a v8::Local");
      std::memcpy(&v, &fn, sizeof v);
      self.Set(name, Napi::Value(Env(), v));
    };
    put("read", HotIo<false>);
    put("write", HotIo<true>);
    put("readChunk", HotReadChunk);
    put("writev", HotWritev);
    // Buffer.prototype, taken from a Buffer as Node makes it.
    napi_value any = Napi::Buffer<uint8_t>::New(Env(), 0);
    v8::Local<v8::Object> sample;
    std::memcpy(static_cast<void *>(&sample), &any, sizeof any);
    buffer_proto_.Reset(iso, sample->GetPrototype().As<v8::Object>());
  }

  static Worker *Self(const v8::FunctionCallbackInfo<v8::Value> &args) {
    return static_cast<Worker *>(args.Data().As<v8::External>()->Value());
  }

  // (h, buf, offset, length) with buf a Uint8Array and offset+length inside it: the bytes, or
  // nullptr for bad arguments.
  static uint8_t *Span(const v8::FunctionCallbackInfo<v8::Value> &args, uint32_t *len) {
    if (args.Length() < 4 || !args[0]->IsNumber() || !args[1]->IsArrayBufferView() || !args[2]->IsUint32() ||
        !args[3]->IsUint32())
      return nullptr;
    v8::Local<v8::ArrayBufferView> view = args[1].As<v8::ArrayBufferView>();
    uint32_t off = args[2].As<v8::Uint32>()->Value();
    *len = args[3].As<v8::Uint32>()->Value();
    size_t size = view->ByteLength();
    if (static_cast<uint64_t>(off) + *len > size) return nullptr;
    static uint8_t none;
    if (size == 0) return &none;  // never touched: the length is 0
    return static_cast<uint8_t *>(view->Buffer()->Data()) + view->ByteOffset() + off;
  }

  static uint64_t HandleArg(const v8::FunctionCallbackInfo<v8::Value> &args) {
    return static_cast<uint64_t>(args[0].As<v8::Number>()->Value());
  }

  // read(h, buf, offset, length) -> bytes (0 at end) or -errno; write(h, buf, offset, length) ->
  // bytes or -errno.
  template <bool kWrite>
  static void HotIo(const v8::FunctionCallbackInfo<v8::Value> &args) {
    Worker *w = Self(args);
    uint32_t len;
    uint8_t *p = Span(args, &len);
    int rv = !w->app_ ? -EBADF
             : !p     ? -EINVAL
             : kWrite ? vls_write(w->W(), HandleArg(args), p, len)
                      : vls_read(w->W(), HandleArg(args), p, len);
    args.GetReturnValue().Set(rv);
  }

  // readChunk(h) -> a Buffer of up to 64 KiB read into a block of the receive pool (RecvPool), 0 at
  // end of stream, or -errno. What a bulk reader asks for: no Buffer of its own to allocate, and
  // the block comes back to the pool when V8 frees the Buffer.
  static void HotReadChunk(const v8::FunctionCallbackInfo<v8::Value> &args) {
    Worker *w = Self(args);
    if (!w->app_) return args.GetReturnValue().Set(-EBADF);
    if (args.Length() < 1 || !args[0]->IsNumber()) return args.GetReturnValue().Set(-EINVAL);
    void *block = RecvPool::Take();
    if (!block) return args.GetReturnValue().Set(-ENOMEM);
    int rv = vls_read(w->W(), HandleArg(args), static_cast<uint8_t *>(block), RecvPool::kBlock);
    if (rv <= 0) {
      RecvPool::Give(block);
      return args.GetReturnValue().Set(rv);
    }
    if (!uv_is_active(reinterpret_cast<uv_handle_t *>(w->pool_timer_))) w->ArmPoolRelease();
    v8::Isolate *iso = args.GetIsolate();
    // V8 schedules a young-generation GC by the bytes of young ArrayBuffers, but it looks at them
    // only when it allocates an ArrayBuffer's memory itself, which Buffers over pool blocks never
    // make it do. Without a look, the young Buffers of a bulk stream pile up until the external
    // memory limit forces full mark-compacts (measured: the receiver took 1.7 times the CPU per
    // GiB, and the stream ran at two thirds of the speed), and their blocks come back late. So
    // every kPoolLookEvery-th read has V8 allocate a 1-byte ArrayBuffer: the look that frees the
    // stream's spent Buffers every few tens of MiB, as it does for Buffers Node allocates.
    if (++w->pool_reads_ % kPoolLookEvery == 0) (void)v8::ArrayBuffer::New(iso, 1);
    // The whole block is the Buffer's backing store, so V8 accounts for all of it.
    std::shared_ptr<v8::BackingStore> bs =
        v8::ArrayBuffer::NewBackingStore(block, RecvPool::kBlock, RecvPool::Deleter, nullptr);
    v8::Local<v8::ArrayBuffer> ab = v8::ArrayBuffer::New(iso, std::move(bs));
    v8::Local<v8::Uint8Array> buf = v8::Uint8Array::New(ab, 0, static_cast<size_t>(rv));
    // What node::Buffer::New does: a Uint8Array with Buffer.prototype.
    if (buf->SetPrototype(iso->GetCurrentContext(), w->buffer_proto_.Get(iso)).IsNothing()) return;
    args.GetReturnValue().Set(buf);
  }

  // writev(h, [buffers], allOrNothing) -> bytes or -errno
  static void HotWritev(const v8::FunctionCallbackInfo<v8::Value> &args) {
    Worker *w = Self(args);
    if (!w->app_) return args.GetReturnValue().Set(-EBADF);
    if (args.Length() < 3 || !args[0]->IsNumber() || !args[1]->IsArray()) return args.GetReturnValue().Set(-EINVAL);
    v8::Local<v8::Array> arr = args[1].As<v8::Array>();
    v8::Local<v8::Context> ctx = args.GetIsolate()->GetCurrentContext();
    uint32_t n = arr->Length();
    vls_iov_t small[16];
    std::vector<vls_iov_t> big;
    vls_iov_t *iov = small;
    if (n > 16) {
      big.resize(n);
      iov = big.data();
    }
    for (uint32_t i = 0; i < n; i++) {
      v8::Local<v8::Value> el;
      if (!arr->Get(ctx, i).ToLocal(&el) || !el->IsArrayBufferView()) return args.GetReturnValue().Set(-EINVAL);
      v8::Local<v8::ArrayBufferView> view = el.As<v8::ArrayBufferView>();
      size_t size = view->ByteLength();
      iov[i].len = static_cast<uint32_t>(size);
      iov[i].base = size ? static_cast<uint8_t *>(view->Buffer()->Data()) + view->ByteOffset() : nullptr;
    }
    args.GetReturnValue().Set(vls_writev(w->W(), HandleArg(args), iov, n, args[2]->BooleanValue(args.GetIsolate())));
  }

  Napi::Value Shutdown(const Napi::CallbackInfo &info) {
    if (!app_) return Napi::Number::New(info.Env(), -EBADF);
    return Napi::Number::New(info.Env(), vls_shutdown(W(), ToHandle(info[0]), info[1].As<Napi::Number>().Int32Value()));
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!app_) return Napi::Number::New(info.Env(), -EBADF);
    return Napi::Number::New(info.Env(), vls_app_close(app_, ToHandle(info[0])));
  }

  Napi::Value Reset(const Napi::CallbackInfo &info) {
    if (!app_) return Napi::Number::New(info.Env(), -EBADF);
    return Napi::Number::New(info.Env(), vls_app_reset(app_, ToHandle(info[0])));
  }

  Napi::Value Info(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!app_) return Napi::Number::New(env, -EBADF);
    vls_session_info_t si;
    int rv = vls_session_info(W(), ToHandle(info[0]), &si);
    if (rv < 0) return Napi::Number::New(env, rv);
    Napi::Object o = Napi::Object::New(env);
    o.Set("state", vls_session_state_str(si.state));
    o.Set("flags", si.flags);
    o.Set("err", si.err);
    o.Set("side", si.side);
    o.Set("rxUsed", si.rx_used);
    o.Set("txUsed", si.tx_used);
    o.Set("fifoSize", si.fifo_size);
    o.Set("bytesIn", static_cast<double>(si.bytes_in));
    o.Set("bytesOut", static_cast<double>(si.bytes_out));
    o.Set("acceptQueued", si.accept_queued);
    return o;
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!app_) return Napi::Number::New(env, -EBADF);
    vls_worker_stats_t ws;
    vls_worker_stats(W(), &ws);
    vls_app_stats_t as;
    vls_app_stats(app_, &as);
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", ws.index);
    o.Set("sessions", ws.n_sessions);
    o.Set("peers", ws.n_peers);
    o.Set("eventsIn", static_cast<double>(ws.evts_in));
    o.Set("eventsOut", static_cast<double>(ws.evts_out));
    o.Set("eventsStale", static_cast<double>(ws.evts_stale));
    o.Set("eventsDeferred", static_cast<double>(ws.evts_deferred));
    o.Set("mqFull", static_cast<double>(ws.mq_full));
    o.Set("wakeups", static_cast<double>(ws.wakeups));
    o.Set("segmentBytes", static_cast<double>(ws.segment_size));
    o.Set("segmentUsed", static_cast<double>(ws.segment_used));
    o.Set("controlConnections", as.n_ctrl);
    o.Set("controlBad", static_cast<double>(as.ctrl_bad));
    o.Set("controlRefused", static_cast<double>(as.ctrl_refused));
    o.Set("sockPath", vls_app_sock_path(app_));
    o.Set("pollWindowUsec", static_cast<double>(window_ns_) / 1000.0);
    o.Set("pollHits", static_cast<double>(poll_hits_));
    o.Set("pollMisses", static_cast<double>(poll_misses_));
    o.Set("recvPoolTakes", static_cast<double>(RecvPool::Takes()));
    o.Set("recvPoolFree", static_cast<double>(RecvPool::FreeBlocks()));
    return o;
  }

  Napi::Value Sessions(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!app_) return out;
    uint32_t i = 0;
    for (uint64_t h = vls_session_next(W(), 0); h; h = vls_session_next(W(), h))
      out.Set(i++, Napi::Number::New(env, static_cast<double>(h)));
    return out;
  }

  // The poll handle keeps the loop alive only while JS holds ref'd sessions or listeners.
  Napi::Value SetRef(const Napi::CallbackInfo &info) {
    bool on = info[0].As<Napi::Boolean>().Value();
    if (poll_ && on != refed_) {
      if (on) {
        uv_ref(reinterpret_cast<uv_handle_t *>(poll_));
        uv_ref(reinterpret_cast<uv_handle_t *>(io_poll_));
      } else {
        uv_unref(reinterpret_cast<uv_handle_t *>(poll_));
        uv_unref(reinterpret_cast<uv_handle_t *>(io_poll_));
      }
      refed_ = on;
    }
    return info.Env().Undefined();
  }
};

Napi::Value Version(const Napi::CallbackInfo &info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("major", VLS_VERSION_MAJOR);
  o.Set("minor", VLS_VERSION_MINOR);
  return o;
}

Napi::Value ErrName(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), vls_err_name(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value Probe(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), vls_app_probe(info[0].As<Napi::String>().Utf8Value().c_str()));
}

// statQuery(sockPath, timeoutMs) -> JSON string, or -errno
Napi::Value StatQuery(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::vector<char> buf(1 << 20);
  int rv = vls_stat_query(path.c_str(), buf.data(), static_cast<uint32_t>(buf.size()),
                          info[1].As<Napi::Number>().Int32Value());
  if (rv < 0) return Napi::Number::New(info.Env(), rv);
  return Napi::String::New(info.Env(), buf.data(), static_cast<size_t>(rv));
}

// mapCounter(path) -> an 8-byte ArrayBuffer over the start of `path` (created, mode 0600, if
// missing), shared with every process that maps it; or -errno. The registry's generation counter:
// a publisher bumps it after changing the directory, and a connect compares it with the one its
// cached listing was read at: a load from memory on every connect.
Napi::Value MapCounter(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Napi::Number::New(env, -errno);
  struct stat st;
  int rv = fstat(fd, &st);
  if (rv == 0 && st.st_size < 8) rv = ftruncate(fd, 8);
  void *m = rv == 0 ? mmap(nullptr, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  int err = errno;
  close(fd);
  if (m == MAP_FAILED) return Napi::Number::New(env, -err);
  return Napi::ArrayBuffer::New(env, m, 8, [](Napi::Env, void *data) { munmap(data, 8); });
}

Napi::Value NsLock(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), vls_ns_lock(info[0].As<Napi::String>().Utf8Value().c_str()));
}

Napi::Value NsUnlock(const Napi::CallbackInfo &info) {
  vls_ns_unlock(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Worker", Worker::Init(env));
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("errName", Napi::Function::New(env, ErrName));
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("nsLock", Napi::Function::New(env, NsLock));
  exports.Set("mapCounter", Napi::Function::New(env, MapCounter));
  exports.Set("statQuery", Napi::Function::New(env, StatQuery));
  exports.Set("nsUnlock", Napi::Function::New(env, NsUnlock));
  return exports;
}

}  // namespace

NODE_API_MODULE(vls, Init)
