package web

import "testing"

func TestGuessClient(t *testing.T) {
	for ua, want := range map[string]string{
		"Xiaomi / M2102J20SG / 11 / 1.1.0 / Android":                           "android",
		"samsung / SM-G991B / 13 / 33 / Android":                               "android",
		"okhttp/4.9.3":                                                         "android",
		"VMS/2.3.1 CFNetwork/1410.0.3 Darwin/22.6.0":                           "ios",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari": "web",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1":  "web",
		"curl/8.5.0": "other",
		"":           "",
	} {
		if got := guessClient(ua); got != want {
			t.Errorf("guessClient(%q) = %q, want %q", ua, got, want)
		}
	}
}
