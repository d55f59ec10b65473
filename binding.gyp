{
  "targets": [
    {
      "target_name": "vls",
      "sources": [
        "native/core/vls_common.c",
        "native/core/vls_segment.c",
        "native/core/vls_fifo.c",
        "native/core/vls_mq.c",
        "native/core/vls_session.c",
        "native/core/vls_epoll.c",
        "native/core/vls_locked.c",
        "native/core/vls_app.c",
        "native/binding/addon.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/core"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-pthread"],
      "cflags_c": ["-std=gnu11"],
      "cflags_cc": ["-Wall", "-Wextra", "-Werror", "-std=c++17", "-fno-exceptions", "-pthread"],
      "ldflags": ["-pthread"]
    }
  ]
}
