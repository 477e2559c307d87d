package store_test

import (
	"testing"

	"vmsauth/store/storetest"
)

// The sweep, HeldUsers and LiveSessions: the case etcdstore's
// TestBackendExtras runs too.
func TestSweep(t *testing.T) {
	db := newDB(t)
	storetest.RunUpkeep(t, db)
	if st, err := db.Stats(); err != nil || st.Users != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
}
