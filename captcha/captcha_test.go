package captcha

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/png"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTest(t *testing.T, max int) (*Captchas, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(Config{Max: max, Now: clk.Now}), clk
}

// answer reads the digits the store holds for key, as a person would read
// them off the image.
func answer(t *testing.T, c *Captchas, key string) string {
	t.Helper()
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	e, ok := c.store.items[key]
	if !ok {
		t.Fatalf("no captcha %q", key)
	}
	s := ""
	for _, d := range e.digits {
		s += fmt.Sprint(d)
	}
	return s
}

func TestVerify(t *testing.T) {
	c, clk := newTest(t, 100)
	newKey := func() (string, string) {
		key, _, err := c.New()
		if err != nil {
			t.Fatal(err)
		}
		return key, answer(t, c, key)
	}
	t.Run("OK", func(t *testing.T) {
		key, ans := newKey()
		if !c.Verify(key, ans) {
			t.Fatal("right answer refused")
		}
	})
	t.Run("SingleUse", func(t *testing.T) {
		key, ans := newKey()
		c.Verify(key, ans)
		if c.Verify(key, ans) {
			t.Fatal("a captcha solved twice")
		}
	})
	t.Run("WrongAnswerUsesItUp", func(t *testing.T) {
		key, ans := newKey()
		wrong := []byte(ans)
		wrong[0] = '0' + (wrong[0]-'0'+1)%10
		if c.Verify(key, string(wrong)) {
			t.Fatal("wrong answer accepted")
		}
		if c.Verify(key, ans) {
			t.Fatal("right answer accepted after a wrong one")
		}
	})
	t.Run("Spaces", func(t *testing.T) {
		key, ans := newKey()
		if !c.Verify(key, " "+ans[:2]+" "+ans[2:]+"\t") {
			t.Fatal("answer with spaces refused")
		}
	})
	t.Run("Expired", func(t *testing.T) {
		key, ans := newKey()
		clk.Add(DefaultTTL)
		if c.Verify(key, ans) {
			t.Fatal("expired captcha accepted")
		}
		if _, err := c.Audio(key, "en"); err != ErrNotFound {
			t.Fatalf("audio of an expired captcha: %v", err)
		}
	})
	t.Run("JustBeforeExpiry", func(t *testing.T) {
		key, ans := newKey()
		clk.Add(DefaultTTL - time.Second)
		if !c.Verify(key, ans) {
			t.Fatal("captcha refused before its TTL")
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		if c.Verify("nope", "12345") {
			t.Fatal("unknown key accepted")
		}
	})
}

func TestImageAndAudio(t *testing.T) {
	c, _ := newTest(t, 10)
	key, img, err := c.New()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 24 {
		t.Fatalf("key %q", key)
	}
	m, err := png.Decode(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := m.Bounds(); b.Dx() != Width || b.Dy() != Height {
		t.Fatalf("image is %v, want %dx%d", b, Width, Height)
	}
	for _, lang := range []string{"en", "ru"} {
		wav, err := c.Audio(key, lang)
		if err != nil {
			t.Fatal(err)
		}
		if len(wav) < 44 || string(wav[:4]) != "RIFF" || string(wav[8:12]) != "WAVE" || string(wav[12:16]) != "fmt " {
			t.Fatalf("%s: not a WAV header: % x", lang, wav[:16])
		}
		if size := binary.LittleEndian.Uint32(wav[4:8]); int(size) != len(wav)-8 {
			t.Fatalf("%s: RIFF size %d for %d bytes", lang, size, len(wav))
		}
	}
	// Listening does not use the captcha up.
	if !c.Verify(key, answer(t, c, key)) {
		t.Fatal("captcha unusable after its audio was played")
	}
}

func TestStoreBound(t *testing.T) {
	const max = 50
	c, _ := newTest(t, max)
	first, _, _ := c.New()
	// The flood goes straight to the store: drawing is not what is tested.
	for i := range 10 * max {
		c.store.Set(fmt.Sprintf("flood-%d", i), []byte{1, 2, 3, 4, 5})
	}
	if n := c.store.Len(); n != max {
		t.Fatalf("store holds %d answers after a flood, want %d", n, max)
	}
	if got := c.store.Get(first, false); got != nil {
		t.Fatal("the oldest captcha survived the flood")
	}
	// Used keys free their place without breaking the ring.
	for i := range 3 * max {
		key := fmt.Sprintf("used-%d", i)
		c.store.Set(key, []byte{1, 2, 3, 4, 5})
		c.Verify(key, "00000")
	}
	if n := c.store.Len(); n > max {
		t.Fatalf("store holds %d answers, more than %d", n, max)
	}
	if len(c.store.order) > max {
		t.Fatalf("key ring grew to %d", len(c.store.order))
	}
}

// BenchmarkNew draws captchas on every core at once, as a burst of clients
// asking for them would, and reports how many a second the machine makes
// (goal: at least 500 on 2 cores).
func BenchmarkNew(b *testing.B) {
	c := New(Config{})
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.New(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "captchas/s")
}
