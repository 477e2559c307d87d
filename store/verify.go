package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// verifyPages walks every page of a bbolt file, as bbolt's tx.Check does,
// and returns the first inconsistency it finds: a page out of range or of
// the wrong kind, an element that does not fit its page, keys out of order,
// a page reached twice or both reached and free, a page neither reached nor
// free.
//
// It reads the file with pread instead of checking through bbolt's map, for
// two reasons. A damaged page id sends bbolt reading memory past its map,
// which faults; tx.Check runs in a goroutine of bbolt's own, where no
// debug.SetPanicOnFault can turn that fault into an error, so the check
// meant to find damage would kill the process instead. And pages read this
// way stay in the page cache without being mapped into the process, so a
// check of the whole file adds nothing to the service's resident set.
//
// The layout is bbolt's (go.etcd.io/bbolt/internal/common, v1.5): a page is
// a 16-byte header (id, flags, count, overflow) followed by count elements
// of 16 bytes, whose keys and values follow them, each at an offset from its
// own element. A bucket is a leaf value of 16 bytes (root page, sequence),
// followed, when the root is 0, by the bucket's whole leaf page inline.
func verifyPages(r io.ReaderAt, m boltMeta) error {
	v := &verifier{r: r, ps: int(m.pageSize), hwm: m.pgid,
		reached: newBitmap(m.pgid), free: newBitmap(m.pgid)}
	v.reached.set(0)
	v.reached.set(1)
	if m.freelist != noFreelist {
		if err := v.freelist(m.freelist); err != nil {
			return err
		}
	}
	if err := v.tree(m.root, nil, nil, 0); err != nil {
		return err
	}
	for id := uint64(2); id < m.pgid; id++ {
		if !v.reached.has(id) && !v.free.has(id) && m.freelist != noFreelist {
			return fmt.Errorf("page %d is neither in use nor free", id)
		}
	}
	return nil
}

const (
	pageHeader  = 16
	elementSize = 16

	branchPage   = 0x01
	leafPage     = 0x02
	freelistPage = 0x10

	bucketFlag   = 0x01
	bucketHeader = 16

	// maxDepth bounds the recursion: a B+tree of a few GB is a handful of
	// levels deep, buckets nest one level in vmsauth.
	maxDepth = 64
)

type verifier struct {
	r       io.ReaderAt
	ps      int
	hwm     uint64
	reached bitmap
	free    bitmap
	// bufs[d] holds the page being walked at depth d: each level's keys
	// bound the next, so each needs its own buffer, and reusing them keeps
	// a walk of a large file from allocating a page per page.
	bufs [maxDepth + 1][]byte
}

// read reads page id with its overflow pages into the buffer of depth d,
// after checking that it is in range and that its header names it.
func (v *verifier) read(id uint64, d int) ([]byte, error) {
	if id < 2 || id >= v.hwm {
		return nil, fmt.Errorf("page %d is out of range (the file has %d pages)", id, v.hwm)
	}
	buf := v.bufs[d]
	if cap(buf) < v.ps {
		buf = make([]byte, v.ps)
	}
	buf = buf[:v.ps]
	if _, err := v.r.ReadAt(buf, int64(id)*int64(v.ps)); err != nil {
		return nil, fmt.Errorf("reading page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(buf); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(le.Uint32(buf[12:]))
	if overflow >= v.hwm-id {
		return nil, fmt.Errorf("page %d runs past the end of the file (%d overflow pages)", id, overflow)
	}
	if overflow > 0 {
		n := int(overflow+1) * v.ps
		if cap(buf) < n {
			buf = append(buf[:cap(buf)], make([]byte, n-cap(buf))...)
		}
		buf = buf[:n]
		if _, err := v.r.ReadAt(buf[v.ps:], int64(id+1)*int64(v.ps)); err != nil {
			return nil, fmt.Errorf("reading page %d: %w", id, err)
		}
	}
	v.bufs[d] = buf
	for i := id; i <= id+overflow; i++ {
		switch {
		case v.reached.has(i):
			return nil, fmt.Errorf("page %d is used twice", i)
		case v.free.has(i):
			return nil, fmt.Errorf("page %d is both in use and free", i)
		}
		v.reached.set(i)
	}
	return buf, nil
}

// freelist reads the free list and marks its pages free.
func (v *verifier) freelist(id uint64) error {
	p, err := v.read(id, 0)
	if err != nil {
		return fmt.Errorf("free list: %w", err)
	}
	le := binary.LittleEndian
	if flags := le.Uint16(p[8:]); flags != freelistPage {
		return fmt.Errorf("free list page %d has the flags %#x of another kind of page", id, flags)
	}
	ids := p[pageHeader:]
	count := uint64(le.Uint16(p[10:]))
	if count == 0xFFFF { // the count did not fit: it is the first id
		if len(ids) < 8 {
			return fmt.Errorf("free list page %d is cut short", id)
		}
		count, ids = le.Uint64(ids), ids[8:]
	}
	if count > uint64(len(ids)/8) {
		return fmt.Errorf("free list page %d lists %d pages, more than it holds", id, count)
	}
	for i := range count {
		f := le.Uint64(ids[i*8:])
		switch {
		case f < 2 || f >= v.hwm:
			return fmt.Errorf("free list page %d lists page %d, out of range", id, f)
		case v.free.has(f):
			return fmt.Errorf("free list page %d lists page %d twice", id, f)
		case v.reached.has(f):
			return fmt.Errorf("page %d is both in use and free", f)
		}
		v.free.set(f)
	}
	return nil
}

// tree walks the subtree at page id, whose keys must lie in [lo, hi) (nil
// for no bound), at depth d.
func (v *verifier) tree(id uint64, lo, hi []byte, d int) error {
	if d >= maxDepth {
		return fmt.Errorf("page %d is nested deeper than any sound file", id)
	}
	p, err := v.read(id, d)
	if err != nil {
		return err
	}
	switch flags := binary.LittleEndian.Uint16(p[8:]); flags {
	case branchPage:
		return v.branch(id, p, lo, hi, d)
	case leafPage:
		return v.leaf(id, p, lo, hi, d)
	default:
		return fmt.Errorf("page %d is in a tree but has the flags %#x of another kind of page", id, flags)
	}
}

func (v *verifier) branch(id uint64, p, lo, hi []byte, d int) error {
	le := binary.LittleEndian
	n := int(le.Uint16(p[10:]))
	if n == 0 || pageHeader+n*elementSize > len(p) {
		return fmt.Errorf("branch page %d has %d elements, which do not fit it", id, n)
	}
	keys := make([][]byte, n)
	for i := range n {
		e := pageHeader + i*elementSize
		k, err := slice(p, e+int(le.Uint32(p[e:])), int(le.Uint32(p[e+4:])))
		if err != nil {
			return fmt.Errorf("branch page %d, key %d: %w", id, i, err)
		}
		if err := inOrder(k, keys, i, lo, hi); err != nil {
			return fmt.Errorf("branch page %d, key %d: %w", id, i, err)
		}
		keys[i] = k
	}
	for i := range n {
		next := hi
		if i+1 < n {
			next = keys[i+1]
		}
		child := le.Uint64(p[pageHeader+i*elementSize+8:])
		if err := v.tree(child, keys[i], next, d+1); err != nil {
			return err
		}
	}
	return nil
}

// leaf checks a leaf page (inline ones have id 0) and walks the buckets it
// holds.
func (v *verifier) leaf(id uint64, p, lo, hi []byte, d int) error {
	le := binary.LittleEndian
	n := int(le.Uint16(p[10:]))
	if pageHeader+n*elementSize > len(p) {
		return fmt.Errorf("leaf page %d has %d elements, which do not fit it", id, n)
	}
	keys := make([][]byte, n)
	for i := range n {
		e := pageHeader + i*elementSize
		flags, pos := le.Uint32(p[e:]), int(le.Uint32(p[e+4:]))
		ksize, vsize := int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
		k, err := slice(p, e+pos, ksize)
		if err == nil {
			err = inOrder(k, keys, i, lo, hi)
		}
		if err != nil {
			return fmt.Errorf("leaf page %d, key %d: %w", id, i, err)
		}
		keys[i] = k
		val, err := slice(p, e+pos+ksize, vsize)
		if err != nil {
			return fmt.Errorf("leaf page %d, value of key %d: %w", id, i, err)
		}
		if flags&bucketFlag == 0 {
			continue
		}
		if err := v.bucket(val, d); err != nil {
			return fmt.Errorf("bucket %q (leaf page %d): %w", k, id, err)
		}
	}
	return nil
}

// bucket walks the bucket whose header is val, found at depth d.
func (v *verifier) bucket(val []byte, d int) error {
	if len(val) < bucketHeader {
		return fmt.Errorf("its header is cut short (%d bytes)", len(val))
	}
	root := binary.LittleEndian.Uint64(val)
	if root != 0 {
		return v.tree(root, nil, nil, d+1)
	}
	inline := val[bucketHeader:]
	if len(inline) < pageHeader {
		return fmt.Errorf("its inline page is cut short (%d bytes)", len(inline))
	}
	if flags := binary.LittleEndian.Uint16(inline[8:]); flags != leafPage {
		return fmt.Errorf("its inline page has the flags %#x of another kind of page", flags)
	}
	if d+1 >= maxDepth {
		return fmt.Errorf("nested deeper than any sound file")
	}
	return v.leaf(0, inline, nil, nil, d+1)
}

// slice returns p[off:off+n], or an error if that is not inside p.
func slice(p []byte, off, n int) ([]byte, error) {
	if off < 0 || n < 0 || off > len(p) || n > len(p)-off {
		return nil, fmt.Errorf("%d bytes at %d run past its page", n, off)
	}
	return p[off : off+n], nil
}

// inOrder checks key i against the one before it and the bounds of its
// subtree.
func inOrder(k []byte, keys [][]byte, i int, lo, hi []byte) error {
	switch {
	case i > 0 && bytes.Compare(keys[i-1], k) >= 0:
		return fmt.Errorf("keys out of order")
	case i == 0 && lo != nil && bytes.Compare(k, lo) < 0:
		return fmt.Errorf("key below its parent's")
	case hi != nil && bytes.Compare(k, hi) >= 0:
		return fmt.Errorf("key above its parent's next")
	}
	return nil
}

// bitmap is a set of page ids below a bound.
type bitmap []uint64

func newBitmap(n uint64) bitmap    { return make(bitmap, (n+63)/64) }
func (b bitmap) set(i uint64)      { b[i/64] |= 1 << (i % 64) }
func (b bitmap) has(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
