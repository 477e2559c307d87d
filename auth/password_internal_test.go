package auth

import (
	"context"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// An unknown login is answered only after a bcrypt comparison against the
// dummy hash; for it to take as long as a wrong password, the dummy must
// have the configured cost.
func TestDummyHashMatchesCost(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 6} {
		h, err := newHasher(cost, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := bcrypt.Cost(h.dummy); err != nil || got != cost {
			t.Fatalf("dummy cost = %d, %v; want %d", got, err, cost)
		}
		ok, err := h.verify(context.Background(), "", "vmsauth dummy password")
		if err != nil || ok {
			t.Fatalf("the dummy's own password matched an unknown user: %v, %v", ok, err)
		}
	}
}

// The hashing pool never runs more comparisons than its width.
func TestHasherWidth(t *testing.T) {
	h, err := newHasher(bcrypt.MinCost, 2)
	if err != nil {
		t.Fatal(err)
	}
	h.slots <- struct{}{}
	h.slots <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.verify(ctx, "", "x"); err == nil {
		t.Fatal("verify ran with the pool full")
	}
}
