package main

import (
	"strings"
	"testing"
	"time"
)

func TestDebianVersion(t *testing.T) {
	day := time.Date(2026, 11, 29, 23, 30, 0, 0, time.FixedZone("", -5*3600)) // 30 Nov in UTC
	for _, c := range []struct{ describe, want string }{
		{"0198e53", "0.0.0~git20261130.0198e53"},
		{"0198e53-dirty", "0.0.0~git20261130.0198e53.dirty"},
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-dirty", "1.2.3.dirty"},
		{"v1.2.3-5-g0198e53", "1.2.3+git20261130.5.0198e53"},
		{"v1.2.3-5-g0198e53-dirty", "1.2.3+git20261130.5.0198e53.dirty"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-rc1-2-gabcdef0", "1.2.3~rc1+git20261130.2.abcdef0"},
	} {
		got, err := debianVersion(c.describe, day)
		if err != nil || got != c.want {
			t.Errorf("debianVersion(%q) = %q, %v; want %q", c.describe, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "dev", "release-1", "v1.2.3_x", "v1.2.3:4"} {
		if got, err := debianVersion(bad, day); err == nil {
			t.Errorf("debianVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// The package's unit is install's, with the settings file added once.
func TestUnit(t *testing.T) {
	unit, err := Unit()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n[Service]\nEnvironmentFile=-/etc/default/vmsauth\n",
		"\nExecStart=\"/usr/bin/vmsauth\" \"serve\" \"--data=/var/lib/vmsauth\"\n",
		"\nUser=vmsauth\n",
		"\nStateDirectory=vmsauth\n",
		"\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if n := strings.Count(unit, "EnvironmentFile="); n != 1 {
		t.Errorf("%d EnvironmentFile= lines, want 1", n)
	}
	// VMSAUTH_LISTEN in the settings file would lose to a --listen flag.
	if strings.Contains(unit, "--listen") {
		t.Errorf("the unit sets --listen, which the settings file could not change:\n%s", unit)
	}
}
