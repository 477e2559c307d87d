package etcdstore_test

import (
	"testing"

	"vmsauth/etcd/etcdtest"
	"vmsauth/store/storetest"
)

// The extras serve needs (cli.Backend), with the bbolt store's rules: the
// same case as store's TestSweep.
func TestBackendExtras(t *testing.T) {
	storetest.RunUpkeep(t, open(t, etcdtest.Start(t, etcdtest.Options{})))
}
