// Command peertar is Go's archive/tar as a peer of oci-rootfs's tar reader, for the
// differential test test/e2e/peer-tars.test.ts:
//
//	peertar read FILE...  prints, per FILE, one JSON line: every entry as Go reads it, or the error
//	peertar write DIR     writes tars with archive/tar's Writer (USTAR, PAX, GNU, Go's choice) into DIR
//
// Names, link targets and PAX keys and values are printed as hex, because they are bytes.
// File contents are summarised by a sparse-aware fingerprint (see fingerprint) so that a
// 60 GB sparse file is compared without reading 60 GB of zeros.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	_ "unsafe" // for go:linkname
)

// readerWriteTo is (*tar.Reader).writeTo, which Go keeps unexported until it has a sparse
// API (golang.org/issue/22735): with an io.WriteSeeker it seeks over the holes of a sparse
// file instead of producing zeros. The empty linkname.s lets this declaration have no body.
//
//go:linkname readerWriteTo archive/tar.(*Reader).writeTo
func readerWriteTo(tr *tar.Reader, w io.Writer) (int64, error)

// window is the granularity of the fingerprint; the TypeScript side uses the same value.
const window = 65536

// fingerprint hashes a file's content as: for every window-aligned block of `window` bytes
// that holds a non-zero byte, its index (uint64 big-endian) and the block (zero-padded past
// the end); then the size (uint64 big-endian). Equal contents give equal fingerprints
// whatever was stored as data or as holes. It is an io.WriteSeeker that only seeks forward.
type fingerprint struct {
	h     hash.Hash
	buf   []byte
	cur   int64
	pos   int64
	dirty bool
}

func newFingerprint() *fingerprint {
	return &fingerprint{h: sha256.New(), buf: make([]byte, window), cur: -1}
}

func (f *fingerprint) flush() {
	if f.cur >= 0 && f.dirty {
		var index [8]byte
		binary.BigEndian.PutUint64(index[:], uint64(f.cur))
		f.h.Write(index[:])
		f.h.Write(f.buf)
	}
	for i := range f.buf {
		f.buf[i] = 0
	}
	f.dirty = false
}

func (f *fingerprint) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := f.pos / window
		if k != f.cur {
			f.flush()
			f.cur = k
		}
		c := copy(f.buf[f.pos%window:], p)
		if !f.dirty && bytes.IndexFunc(p[:c], func(r rune) bool { return r != 0 }) >= 0 {
			f.dirty = true
		}
		f.pos += int64(c)
		p = p[c:]
	}
	return n, nil
}

func (f *fingerprint) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return 0, fmt.Errorf("fingerprint: only forward relative seeks")
	}
	f.pos += offset
	return f.pos, nil
}

func (f *fingerprint) sum(size int64) string {
	f.flush()
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	f.h.Write(sz[:])
	return hex.EncodeToString(f.h.Sum(nil))
}

type entry struct {
	Name     string      `json:"name"`
	Typeflag string      `json:"typeflag"`
	Mode     int64       `json:"mode"`
	UID      int         `json:"uid"`
	GID      int         `json:"gid"`
	Size     int64       `json:"size"`
	Linkname string      `json:"linkname"`
	Devmajor int64       `json:"devmajor"`
	Devminor int64       `json:"devminor"`
	Mtime    int64       `json:"mtime"`
	Xattrs   [][2]string `json:"xattrs"`
	Digest   string      `json:"digest"`
	Sparse   bool        `json:"sparse"`
}

type view struct {
	File    string  `json:"file"`
	Entries []entry `json:"entries"`
	Error   *string `json:"error"`
}

func hasContent(flag byte) bool {
	return flag == tar.TypeReg || flag == tar.TypeRegA || flag == tar.TypeCont || flag == tar.TypeGNUSparse
}

func readOne(path string) view {
	v := view{File: path, Entries: []entry{}}
	fail := func(err error) view {
		msg := err.Error()
		v.Error = &msg
		return v
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return v
		}
		if err != nil {
			return fail(err)
		}
		e := entry{
			Name:     hex.EncodeToString([]byte(h.Name)),
			Typeflag: string([]byte{h.Typeflag}),
			Mode:     h.Mode,
			UID:      h.Uid,
			GID:      h.Gid,
			Size:     h.Size,
			Linkname: hex.EncodeToString([]byte(h.Linkname)),
			Devmajor: h.Devmajor,
			Devminor: h.Devminor,
			Mtime:    h.ModTime.Unix(),
			Xattrs:   [][2]string{},
		}
		keys := make([]string, 0, len(h.PAXRecords))
		for k := range h.PAXRecords {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				e.Xattrs = append(e.Xattrs, [2]string{hex.EncodeToString([]byte(k[len("SCHILY.xattr."):])), hex.EncodeToString([]byte(h.PAXRecords[k]))})
			}
			if strings.HasPrefix(k, "GNU.sparse.") {
				e.Sparse = true
			}
		}
		if h.Typeflag == tar.TypeGNUSparse {
			e.Sparse = true
		}
		if hasContent(h.Typeflag) {
			fp := newFingerprint()
			n, err := readerWriteTo(tr, fp)
			if err != nil {
				return fail(fmt.Errorf("reading %q: %w", h.Name, err))
			}
			if n != h.Size {
				return fail(fmt.Errorf("reading %q: %d bytes of %d", h.Name, n, h.Size))
			}
			e.Digest = fp.sum(h.Size)
		}
		v.Entries = append(v.Entries, e)
	}
}

// ---------------------------------------------------------------------------------------------
// Writing

type item struct {
	hdr     tar.Header
	content string
}

const t0 = 1600000000

func items(format tar.Format) []item {
	pax := format == tar.FormatPAX
	gnu := format == tar.FormatGNU
	rich := pax || gnu || format == tar.FormatUnknown
	long255 := "go/" + strings.Repeat("n", 120) + "/" + strings.Repeat("m", 150) + ".txt"
	// Fits ustar's prefix (155) + name (100) split at a slash.
	long200 := "go/" + strings.Repeat("p", 90) + "/" + strings.Repeat("q", 90) + ".txt"
	list := []item{
		{tar.Header{Typeflag: tar.TypeDir, Name: "go/", Mode: 0o755, ModTime: time.Unix(t0, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: "go/plain.txt", Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: time.Unix(t0+1, 0)}, "hello from go\n"},
		{tar.Header{Typeflag: tar.TypeReg, Name: "go/setuid", Mode: 0o4755, ModTime: time.Unix(t0+2, 0)}, "#!/bin/sh\n"},
		{tar.Header{Typeflag: tar.TypeDir, Name: "go/sticky/", Mode: 0o1777, ModTime: time.Unix(t0+3, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeDir, Name: "go/empty/", Mode: 0o2750, Gid: 50, ModTime: time.Unix(t0+3, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: long200, Mode: 0o600, ModTime: time.Unix(t0+4, 0)}, "long 200\n"},
		{tar.Header{Typeflag: tar.TypeLink, Name: "go/hard", Linkname: "go/plain.txt", Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: time.Unix(t0+1, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "go/sym", Linkname: "plain.txt", Mode: 0o777, ModTime: time.Unix(t0+5, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeFifo, Name: "go/fifo", Mode: 0o600, ModTime: time.Unix(t0+6, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeChar, Name: "go/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: time.Unix(t0+7, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeBlock, Name: "go/loop0", Mode: 0o660, Gid: 6, Devmajor: 7, Devminor: 0, ModTime: time.Unix(t0+7, 0)}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: "go/zeros", Mode: 0o644, ModTime: time.Unix(t0+8, 0)}, strings.Repeat("\x00", 3*window+17)},
	}
	if rich {
		list = append(list,
			item{tar.Header{Typeflag: tar.TypeReg, Name: long255, Mode: 0o644, ModTime: time.Unix(t0+9, 0)}, "long 255\n"},
			item{tar.Header{Typeflag: tar.TypeSymlink, Name: "go/long-link", Linkname: strings.Repeat("t/", 80) + "end", Mode: 0o777, ModTime: time.Unix(t0+10, 0)}, ""},
			item{tar.Header{Typeflag: tar.TypeLink, Name: "go/hard-to-long", Linkname: long255, Mode: 0o644, ModTime: time.Unix(t0+9, 0)}, ""},
			item{tar.Header{Typeflag: tar.TypeReg, Name: "go/big-ids", Uid: 1 << 22, Gid: 4294967294, Mode: 0o640, ModTime: time.Unix(t0+11, 0)}, "big ids\n"},
			item{tar.Header{Typeflag: tar.TypeReg, Name: "go/caf\xe9-\xff.bin", Mode: 0o644, ModTime: time.Unix(t0+12, 0)}, "not utf-8\n"},
			item{tar.Header{Typeflag: tar.TypeReg, Name: "go/\u65e5\u672c\u8a9e.txt", Mode: 0o644, ModTime: time.Unix(t0+12, 0)}, "utf-8\n"},
			item{tar.Header{Typeflag: tar.TypeReg, Name: "go/far-future", Mode: 0o644, ModTime: time.Unix(10000000000, 0)}, "year 2286\n"},
			item{tar.Header{Typeflag: tar.TypeReg, Name: "go/before-1970", Mode: 0o644, ModTime: time.Unix(-86400, 0)}, "1969\n"},
		)
	}
	if pax {
		list = append(list,
			item{tar.Header{Typeflag: tar.TypeReg, Name: "go/xattrs", Mode: 0o644, ModTime: time.Unix(t0+13, 500000000), PAXRecords: map[string]string{
				"SCHILY.xattr.user.go":    "value\x00\xff",
				"SCHILY.xattr.user.empty": "",
				"GOLANG.pkg":              "tar",
				"comment":                 "Hello, \u4e16\u754c",
			}}, "xattrs\n"},
		)
	}
	return list
}

func writeOne(path string, format tar.Format, global bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if global {
		g := tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "a global header", "GOLANG.note": "dropped"}}
		if err := tw.WriteHeader(&g); err != nil {
			return err
		}
	}
	for _, it := range items(format) {
		h := it.hdr
		h.Format = format
		h.Size = int64(len(it.content))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		if _, err := io.WriteString(tw, it.content); err != nil {
			return err
		}
	}
	return tw.Close()
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "read" {
		out := json.NewEncoder(os.Stdout)
		for _, path := range os.Args[2:] {
			if err := out.Encode(readOne(path)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "write" {
		dir := os.Args[2]
		jobs := []struct {
			name   string
			format tar.Format
			global bool
		}{
			{"go-ustar.tar", tar.FormatUSTAR, false},
			{"go-pax.tar", tar.FormatPAX, false},
			{"go-gnu.tar", tar.FormatGNU, false},
			{"go-any.tar", tar.FormatUnknown, false},
			{"go-pax-global.tar", tar.FormatPAX, true},
		}
		for _, job := range jobs {
			if err := writeOne(filepath.Join(dir, job.name), job.format, job.global); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: peertar read FILE... | peertar write DIR")
	os.Exit(2)
}
