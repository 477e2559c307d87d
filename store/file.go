package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"time"
)

// The layout of a bbolt meta page (go.etcd.io/bbolt/internal/common, v1.5):
// a 16-byte page header, then magic, version, page size, flags (uint32
// each), root bucket (16 bytes), freelist, high-water page id and txid
// (uint64 each), and an FNV-64a checksum of everything in the meta before
// it. Pages 0 and 1 are meta pages. bbolt writes them in native byte order;
// we read little-endian, the order of every machine vmsauth ships for.
const (
	boltMagic    = 0xED0CDAED
	boltVersion  = 2
	metaOffset   = 16
	metaSumStart = metaOffset
	metaSumEnd   = metaOffset + 56
	metaEnd      = metaSumEnd + 8
	minPages     = 4 // two meta pages, a freelist and the root leaf
)

type boltMeta struct {
	pageSize uint32
	root     uint64 // page of the root bucket
	freelist uint64 // page of the free list, or noFreelist
	pgid     uint64 // pages in use: the file must hold at least this many
	txid     uint64
}

// noFreelist is the freelist page id of a file whose free list is not kept
// (bbolt's NoFreelistSync, which vmsauth never sets).
const noFreelist = ^uint64(0)

// checkFile refuses what bbolt would misread: it silently turns a 0-byte
// file into a new empty database (losing every user of a bad restore), and
// it can fault on a truncated or damaged one. A missing file is fine; Open
// creates it. With walk, it also walks every page of the file (see
// verify.go). The file is checked under a shared lock, taken within
// timeout, so that no writer changes it meanwhile.
func checkFile(path string, timeout time.Duration, walk bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	defer f.Close()
	if err := lockShared(f, timeout); errors.Is(err, errLockTimeout) {
		return lockedError(path)
	} else if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	return verifyFile(f, path, walk)
}

// verifyFile checks that f is a whole bbolt file and, with walk, walks
// every page of it (see verify.go).
func verifyFile(f *os.File, path string, walk bool) error {
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	size := info.Size()
	switch {
	case !info.Mode().IsRegular():
		return fmt.Errorf("database %s is %w: not a regular file", path, ErrInvalid)
	case size == 0:
		return fmt.Errorf("database %s is %w: it is empty (0 bytes); restore a backup, or remove it to start afresh", path, ErrInvalid)
	}
	m, ok := readMeta(f, 0)
	if !ok {
		// A crash while writing meta page 0 leaves page 1 intact, and bbolt
		// recovers from it; find page 1 the way bbolt does, by trying each
		// page size it supports.
		for off := int64(1024); off <= 1024<<14 && off+metaEnd <= size; off <<= 1 {
			if m, ok = readMeta(f, off); ok && int64(m.pageSize) == off {
				break
			}
			ok = false
		}
		if !ok {
			return fmt.Errorf("database %s is %w: it is not a bbolt file", path, ErrInvalid)
		}
	} else if m1, ok := readMeta(f, int64(m.pageSize)); ok && m1.pageSize == m.pageSize && m1.txid > m.txid {
		m = m1 // bbolt uses the newer meta
	}
	need := int64(m.pageSize) * max(int64(m.pgid), minPages)
	if size < need {
		return fmt.Errorf("database %s is %w: it is truncated (%d bytes, needs %d); restore a backup", path, ErrInvalid, size, need)
	}
	if !walk {
		return nil
	}
	if err := verifyPages(f, m); err != nil {
		return fmt.Errorf("database %s is %w: %w; %s", path, ErrDamaged, err, restoreAdvice)
	}
	return nil
}

// readMeta reads the meta page at off and reports whether it is a valid one.
func readMeta(f io.ReaderAt, off int64) (boltMeta, bool) {
	var buf [metaEnd]byte
	if _, err := f.ReadAt(buf[:], off); err != nil {
		return boltMeta{}, false
	}
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(buf[metaSumStart:metaSumEnd])
	m := boltMeta{
		pageSize: le.Uint32(buf[metaOffset+8:]),
		root:     le.Uint64(buf[metaOffset+16:]),
		freelist: le.Uint64(buf[metaOffset+32:]),
		pgid:     le.Uint64(buf[metaOffset+40:]),
		txid:     le.Uint64(buf[metaOffset+48:]),
	}
	valid := le.Uint32(buf[metaOffset:]) == boltMagic &&
		le.Uint32(buf[metaOffset+4:]) == boltVersion &&
		le.Uint64(buf[metaSumEnd:]) == h.Sum64() &&
		m.pageSize >= 512
	return m, valid
}
