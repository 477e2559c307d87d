package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/internal/touchq"
)

// Activity (a session's last use, its extended expiry, its latest address)
// is written behind, as on the bbolt store: TouchSession notes it in memory
// and returns, and a flush writes every noted touch once a second, in one
// Txn per touchChunk sessions (etcd refuses more than 128 operations per
// Txn). A token check so never waits for a write through raft, and a box
// with a thousand busy clients writes a few Txns a second instead of a
// thousand. Each touch is guarded by the session's mod revision, so it never
// brings back a session ended meanwhile (by any box). Every read of a
// session on this box sees its noted touch at once; other boxes see it
// within a second. A box that dies loses at most its last second of
// activity: a session then looks unused a second longer, never more.

const (
	touchFlushEvery = time.Second
	// touchChunk sessions per Txn: a compare and a put each.
	touchChunk = 100
	// maxPendingTouches bounds the memory of touches that an outage keeps
	// from being flushed; past it, a touch is written before TouchSession
	// returns, where the outage is the caller's to see.
	maxPendingTouches = 4096
)

// touches are the noted touches not yet written (see touchq), and the
// loop that flushes them.
type touches struct {
	*touchq.Queue
	start sync.Once
	stop  chan struct{}
	done  chan struct{}
}

func newTouches() *touches {
	return &touches{Queue: touchq.New(maxPendingTouches, 0), stop: make(chan struct{}), done: make(chan struct{})}
}

// startTouches starts the flush loop on the first touch.
func (s *Store) startTouches() {
	s.touches.start.Do(func() { go s.touchLoop() })
}

func (s *Store) touchLoop() {
	defer close(s.touches.done)
	// Close stops a flush that waits on an etcd that does not answer:
	// its own flush then gets the last word, within its own time.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.touches.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(touchFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.touches.stop:
			return
		case <-tick.C:
		}
		// A failed flush keeps its touches for the next.
		_ = s.flushTouches(ctx)
	}
}

// closeTouches stops noting and the loop, and writes what waits.
func (s *Store) closeTouches() error {
	t := s.touches
	t.Close()
	t.start.Do(func() { close(t.done) }) // never started
	close(t.stop)
	<-t.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.flushTouches(ctx)
}

// TouchSession notes activity; a missing session is not an error. The
// touch is written within a second (see touches), and every read on this
// box sees it at once.
func (s *Store) TouchSession(ctx context.Context, h auth.TokenHash, lastSeen, expiresAt time.Time, ip string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	n := touchq.Touch{LastSeen: lastSeen, Expires: expiresAt, IP: ip}
	s.startTouches()
	if s.touches.Note(h, n) {
		return nil
	}
	// The queue is full: an outage keeps it from being flushed. A token
	// check answered from the cache within the stale grace must not wait
	// a whole timeout for a write that will fail too; the touch is lost
	// (a session looks unused a little longer).
	if err := s.Health(ctx); err != nil {
		return err
	}
	return s.writeTouches(ctx, map[auth.TokenHash]touchq.Touch{h: n})
}

// flushTouches writes every waiting touch, chunk by chunk; a chunk that
// fails keeps its touches waiting.
func (s *Store) flushTouches(ctx context.Context) error {
	batch := s.touches.Snapshot()
	if batch == nil {
		return nil
	}
	var errs []error
	chunk := make(map[auth.TokenHash]touchq.Touch, min(touchChunk, len(batch)))
	flush := func() {
		if len(errs) > 0 && errors.Is(errs[0], auth.ErrUnavailable) || ctx.Err() != nil {
			// etcd does not answer: each further chunk would wait its
			// whole timeout too. They wait for the next flush.
		} else if err := s.writeTouches(ctx, chunk); err != nil {
			errs = append(errs, err)
		} else {
			s.touches.Written(chunk)
		}
		chunk = make(map[auth.TokenHash]touchq.Touch, touchChunk)
	}
	for h, n := range batch {
		chunk[h] = n
		if len(chunk) == touchChunk {
			flush()
		}
	}
	if len(chunk) > 0 {
		flush()
	}
	return errors.Join(errs...)
}

// writeTouches writes at most touchChunk touches in one Txn guarded by
// each session's mod revision, skipping sessions that ended.
func (s *Store) writeTouches(ctx context.Context, batch map[auth.TokenHash]touchq.Touch) error {
	hashes := make([]auth.TokenHash, 0, len(batch))
	for h := range batch {
		hashes = append(hashes, h)
	}
	_, err := s.write(ctx, func(bool) (*etcd.TxnRequest, error) {
		// The indexes, then the records, each in one read Txn.
		idx := etcd.TxnRequest{}
		for _, h := range hashes {
			idx.Success = append(idx.Success, etcd.Op{Range: &etcd.RangeRequest{Key: s.sessionHashKey(h)}})
		}
		r, err := s.txn(ctx, idx)
		if err != nil {
			return nil, err
		}
		recs := etcd.TxnRequest{}
		for i, resp := range r.Responses {
			if resp.Range == nil || len(resp.Range.KVs) == 0 {
				continue
			}
			uid, err := parseID(resp.Range.KVs[0].Value)
			if err != nil {
				return nil, fmt.Errorf("etcdstore: session index %s: %w", resp.Range.KVs[0].Key, err)
			}
			recs.Success = append(recs.Success, etcd.Op{Range: &etcd.RangeRequest{
				Key: s.sessionKey(uid, hashes[i]), Revision: r.Header.Revision}})
		}
		if len(recs.Success) == 0 {
			return nil, nil
		}
		if r, err = s.txn(ctx, recs); err != nil {
			return nil, err
		}
		txn := &etcd.TxnRequest{}
		for _, resp := range r.Responses {
			if resp.Range == nil || len(resp.Range.KVs) == 0 {
				continue
			}
			kv := &resp.Range.KVs[0]
			sess, err := decodeSession(kv)
			if err != nil {
				return nil, err
			}
			n, ok := batch[sess.TokenHash]
			if !ok {
				continue
			}
			n.To(sess)
			v, err := json.Marshal(sess)
			if err != nil {
				return nil, err
			}
			txn.Compare = append(txn.Compare, unchanged(kv.Key, kv))
			txn.Success = append(txn.Success, put(kv.Key, v))
		}
		if len(txn.Success) == 0 {
			return nil, nil
		}
		return txn, nil
	})
	return err
}
