{
  "targets": [
    {
      "target_name": "cordon-sandbox",
      "type": "executable",
      "conditions": [
        [
          "OS!='linux'",
          {
            "type": "none"
          }
        ]
      ],
      "sources": [
        "native/cordon-sandbox.c"
      ],
      "cflags": [
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fstack-protector-strong",
        "-D_FORTIFY_SOURCE=2",
        "-fPIE"
      ],
      "ldflags": [
        "-pie",
        "-Wl,-z,relro,-z,now"
      ]
    },
    {
      "target_name": "cordon_native",
      "sources": [
        "native/cordon-native.c"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ],
      "cflags": [
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fstack-protector-strong",
        "-D_FORTIFY_SOURCE=2"
      ],
      "ldflags": [
        "-Wl,-z,relro,-z,now"
      ]
    }
  ]
}
