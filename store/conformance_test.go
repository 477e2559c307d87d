package store_test

import (
	"testing"

	"vmsauth/store/storetest"
)

// TestConformance runs the storage contract on bbolt.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return newDB(t) })
}
