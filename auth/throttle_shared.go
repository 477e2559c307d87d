package auth

import (
	"context"
	"slices"
	"time"
)

// SharedCounters keeps the event times of throttle keys for all the boxes
// of a site together, so that the limits hold over the site rather than
// per box. It only stores and swaps: the rule (judge) stays here, applied
// by fn, the same function a Window applies to its own keys.
//
// Keys are "ip/<client key>" and "login/<login key>"; values are event
// times in Unix nanoseconds, oldest first, never more than the limit.
type SharedCounters interface {
	// Update reads key's event times (none for an absent key) and calls
	// fn on them; when fn asks to write, it stores what fn returned in
	// their place, atomically: if another box wrote the key in between,
	// it reads again and calls fn again, so fn may run more than once and
	// its last run is what happened. An empty list deletes the key. The
	// backend keeps a written key for at least keep and may drop it after
	// (its events have left the window by then), so idle keys cost
	// nothing. An error means the counters are out of reach: the caller
	// refuses the request (fail closed).
	Update(ctx context.Context, key string, keep time.Duration, fn func(hits []int64) (next []int64, write bool)) error
}

// SharedPairs is SharedCounters that can also update two keys in one
// atomic step: an attempt's client key and login, counted together in one
// round trip to the site rather than one each.
type SharedPairs interface {
	SharedCounters
	// UpdatePair is Update of two distinct keys at once: fn gets both
	// keys' event times and says what to write to each; the writes of
	// both happen at once, and only if neither key changed since fn saw
	// them, else fn runs again on what they hold.
	UpdatePair(ctx context.Context, keys [2]string, keep time.Duration, fn func(hits [2][]int64) (next [2][]int64, write [2]bool)) error
}

// undoTimeout bounds the shared take-back of an attempt that was not a
// failure. It runs before the answer, with no request context of its own,
// and also after a login that failed because etcd is out: short, so that
// such a login still answers 503 within the 5 s a site promises.
const undoTimeout = 2 * time.Second

// beginShared is Begin on a site box, after the box's own Window let the
// client key through: a local refusal is also a site refusal, and keeps a
// flood off etcd.
//
// The client key is counted in the box's Window first, as a reservation
// that bounds how many requests of one client a box has in flight, then in
// the site's counter; the Window then merges what the site holds for the
// key, so a client the site has refused is next refused here without
// asking etcd. A client key's events are never taken back, so what a box
// learnt of it stays true until the events leave the window.
//
// A login is judged by the site alone: its events are taken back when a
// login succeeds, possibly on another box, so a lock a box learnt may be
// gone a moment later (ten users of one shared account logging in at
// once fill the count while they hash, then free it), and a box that kept
// refusing on what it learnt would lock the account for the whole window.
// A refused login costs etcd one read, never a write, and every request
// that reaches it was counted against its client key first, so the
// client's budget bounds those reads too. The box's Window of logins holds
// what the site last said of the keys it refused, to tally its refusals.
//
// The one difference from a single box: the client key is counted before
// the login is looked up or judged, so a client the site refuses costs no
// lookup, and a request refused for its login still counts against its
// client key (a single box counts it only once the login passed). Without
// this, requests at a locked login would cost etcd reads with nothing to
// bound them.
//
// On a backend that counts two keys at once (SharedPairs), the login is
// looked up first and both keys are counted in one step (beginPair): the
// same rules, at one round trip to the site instead of two.
func (t *Throttle) beginShared(ctx context.Context, ip, ipKey, login string) (Decision, *Attempt) {
	d, at := t.ip.take(ipKey, ipKey, ip, true)
	if !d.Allowed {
		return d, nil
	}
	if login != "" {
		if p, ok := t.shared.(SharedPairs); ok {
			return t.beginPair(ctx, p, ip, ipKey, login, at)
		}
	}
	if d = t.takeShared(ctx, t.ip, "ip/"+ipKey, ipKey, ipKey, ip, at); !d.Allowed {
		return d, nil
	}
	if login == "" {
		return d, &Attempt{}
	}
	key, err := t.loginKey(ctx, login)
	if err != nil {
		return Decision{Limit: t.login.limit, Kind: "login", Err: err}, nil
	}
	if ld := t.takeShared(ctx, t.login, "login/"+key, key, login, ip, at); !ld.Allowed {
		return ld, nil
	}
	return d, &Attempt{w: t.login, key: key, at: at, shared: t.shared}
}

// takeShared counts one event of key at now in the site's counter skey if
// the site holds fewer than w's limit. The client keys' Window (reserved
// says the event at now is in it already) merges the site's events of key;
// the logins' Window takes them as they are. A refusal by the site is
// tallied in w as the box's own, so each box logs and audits its own first
// refusal of a lock, and counts the rest for its summary.
func (t *Throttle) takeShared(ctx context.Context, w *Window, skey, key, label, ip string, now int64) Decision {
	var (
		d    Decision
		site []int64
	)
	err := t.shared.Update(ctx, skey, time.Duration(w.window), func(hits []int64) ([]int64, bool) {
		var next []int64
		site, d, next = w.count(hits, now)
		return next, d.Allowed
	})
	return t.settle(w, key, label, ip, now, site, d, err)
}

// beginPair is the rest of beginShared on a backend that counts two keys
// at once: the login is looked up first, and its client key and login are
// judged and counted in one step, as takeShared would one after the
// other. A client the site refuses thus costs one lookup; its box's
// Window then holds the site's events and refuses it without asking.
func (t *Throttle) beginPair(ctx context.Context, p SharedPairs, ip, ipKey, login string, at int64) (Decision, *Attempt) {
	key, err := t.loginKey(ctx, login)
	if err != nil {
		t.ip.Undo(ipKey, at)
		return Decision{Limit: t.login.limit, Kind: "login", Err: err}, nil
	}
	var (
		d, ld          Decision
		ipSite, lgSite []int64
		judged         bool // the login was judged: the client key let it through
	)
	keys := [2]string{"ip/" + ipKey, "login/" + key}
	err = p.UpdatePair(ctx, keys, time.Duration(t.ip.window), func(hits [2][]int64) ([2][]int64, [2]bool) {
		var next [2][]int64
		ipSite, d, next[0] = t.ip.count(hits[0], at)
		if judged = d.Allowed; !judged {
			return next, [2]bool{}
		}
		lgSite, ld, next[1] = t.login.count(hits[1], at)
		return next, [2]bool{true, ld.Allowed}
	})
	if d = t.settle(t.ip, ipKey, ipKey, ip, at, ipSite, d, err); !d.Allowed || !judged {
		return d, nil
	}
	if ld = t.settle(t.login, key, login, ip, at, lgSite, ld, nil); !ld.Allowed {
		return ld, nil
	}
	return d, &Attempt{w: t.login, key: key, at: at, shared: t.shared}
}

// count judges the site's events hits of one of w's keys at now, and
// when allowed returns them with the event at now added.
func (w *Window) count(hits []int64, now int64) (site []int64, d Decision, next []int64) {
	site, d = judge(hits, now, w.window, w.limit, w.kind)
	if !d.Allowed {
		return site, d, nil
	}
	// Boxes' clocks differ a little: keep the times in order.
	i, _ := slices.BinarySearch(site, now)
	next = slices.Insert(slices.Clone(site), i, now)
	d.Remaining--
	return site, d, next
}

// settle brings what the site said of key (its events site and decision
// d, or err) into the box's Window w; see takeShared.
func (t *Throttle) settle(w *Window, key, label, ip string, now int64, site []int64, d Decision, err error) Decision {
	reserved := w == t.ip
	if err != nil {
		if reserved {
			w.Undo(key, now)
		}
		return Decision{Limit: w.limit, Kind: w.kind, Err: err}
	}
	if reserved && !d.Allowed {
		w.Undo(key, now) // refused events are not counted
	}
	// A login's entry is made only when the site refuses it: the entry
	// only tallies refusals, and so the box's table of logins holds no
	// more than on a single box.
	w.adopt(key, site, reserved, reserved || !d.Allowed)
	if d.Allowed {
		// The end of a lock is the end of its run of refusals: reported
		// now, so that the next lock is reported as new.
		w.Peek(key)
		return d
	}
	if ld, _ := w.take(key, label, ip, false); !ld.Allowed {
		return ld
	}
	return d
}

// undoShared takes a successful attempt off the site's counter of its
// login. Failing that (etcd out), the attempt stays counted as a failure
// until it leaves the window: the safe side.
func (a *Attempt) undoShared() {
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	_ = a.shared.Update(ctx, "login/"+a.key, time.Duration(a.w.window), func(hits []int64) ([]int64, bool) {
		i := slices.Index(hits, a.at)
		if i < 0 {
			return nil, false
		}
		return slices.Delete(slices.Clone(hits), i, i+1), true
	})
}

// adopt makes hits (the site's events of key, oldest first) the key's
// events in w, or with merge adds them to its own: the events of requests
// still in flight on this box are in its Window and maybe not yet in the
// site's. Without create, a key w does not hold is left out. The key goes
// to the head of w's list as if just used: its latest event is recent (the
// site just judged it), and an older one only makes purge find it a
// little later.
func (w *Window) adopt(key string, hits []int64, merge, create bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.keys[key]
	if !ok && !create {
		return
	}
	if merge && ok {
		hits = mergeHits(c.hits, hits)
	}
	if len(hits) > w.limit {
		hits = hits[len(hits)-w.limit:]
	}
	switch {
	case len(hits) == 0 && ok:
		w.remove(c)
		return
	case len(hits) == 0:
		return
	case ok:
		w.unlink(c)
	default:
		// The Window's bound was checked when the client key was
		// reserved; a login key came with one.
		c = &counter{key: key}
		w.keys[key] = c
	}
	c.hits = append(c.hits[:0], hits...)
	w.pushFront(c)
}

// mergeHits is the ordered union of two ordered lists of event times.
func mergeHits(a, b []int64) []int64 {
	out := make([]int64, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0] < b[0]:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0] < a[0]:
			out, b = append(out, b[0]), b[1:]
		default: // the same event, in both
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return out
}
