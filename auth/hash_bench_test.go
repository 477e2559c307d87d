package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/store/storetest"
)

// BenchmarkLoginTime compares a wrong password for an unknown login with
// one for a login whose stored hash is cheaper than the configured cost
// (an old import): their times must be about the same, or the time tells
// which logins exist. Run with -benchtime=20x; it is not a test because
// times on a shared machine prove nothing.
func BenchmarkLoginTime(b *testing.B) {
	db := storetest.OpenForTest(b)
	svc, err := auth.New(db, auth.Config{BcryptCost: bcrypt.DefaultCost})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Wait)
	cheap, err := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if err := db.CreateUser(b.Context(), &auth.User{Login: "imported", PasswordHash: string(cheap), APIs: auth.AllAPIs, CreatedAt: now, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	for _, login := range []string{"unknown", "imported"} {
		b.Run(login, func(b *testing.B) {
			for b.Loop() {
				_, err := svc.Login(context.Background(), auth.LoginRequest{API: auth.APIClient, Login: login, Password: "wrong-password"})
				if !errors.Is(err, auth.ErrBadCredentials) {
					b.Fatal(err)
				}
			}
		})
	}
}
