package etcdstore

import (
	"context"
	"errors"

	"vmsauth/auth"
)

// BreakWatch ends the store's watch for good, as a broken stream that
// cannot be opened again would, and leaves its cache as it was.
func (s *Store) BreakWatch() {
	s.startWatch()
	s.cache.cancel()
	<-s.cache.done
	s.cache.setDown(errors.New("test: watch broken"))
}

// ReadThenFill is a token check's miss split in two: it reads the session
// of h from etcd, runs between, and then offers what it read to the cache.
func (s *Store) ReadThenFill(ctx context.Context, h auth.TokenHash, between func()) error {
	s.startWatch()
	sess, u, modRev, rev, err := s.readSession(ctx, h)
	if err != nil {
		return err
	}
	between()
	s.cache.fill(rev, sess, modRev, u)
	return nil
}
