{
  "variables": {
    # install.mjs sets OCI_ROOTFS_BUILD_DEFLATE=0 where libdeflate's headers are missing or
    # the deflate addon failed to build, so oci_fs is still built alone.
    "build_deflate%": "<!(node -p \"process.env.OCI_ROOTFS_BUILD_DEFLATE || '1'\")"
  },
  "targets": [
    {
      "target_name": "oci_fs",
      "sources": ["oci_fs.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra"]
    }
  ],
  "conditions": [
    ["build_deflate==1", {
      "targets": [
        {
          "target_name": "oci_deflate",
          "sources": ["oci_deflate.c"],
          "cflags": ["-std=c11", "-Wall", "-Wextra"],
          "libraries": ["<!@(node link-flags.cjs)"]
        }
      ]
    }]
  ]
}
