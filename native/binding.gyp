{
  "targets": [
    {
      "target_name": "oci_deflate",
      "sources": ["oci_deflate.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra"],
      "libraries": ["<!@(node link-flags.cjs)"]
    }
  ]
}
