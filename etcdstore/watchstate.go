package etcdstore

import "time"

// WatchState is what this box knows of its watch of the site, for
// `vmsauth site status` and /healthz.
type WatchState struct {
	// Up: a watch stream is open and the cache follows the site.
	Up bool `json:"up"`
	// Revision is the last revision of the site the cache has seen.
	Revision int64 `json:"revision"`
	// Since is when Up last changed.
	Since time.Time `json:"since"`
	// Cached counts the sessions held by the token-check cache.
	Cached int `json:"cached"`
	// Error says why the watch is down, when it is.
	Error string `json:"error,omitempty"`
}

// WatchState reports the box's watch of the site (see cache.go). The
// watch starts with the first token check.
func (s *Store) WatchState() WatchState {
	return s.cache.state()
}
