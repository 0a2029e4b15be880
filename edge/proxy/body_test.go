package proxy

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/valyala/fasthttp"
)

// TestVisitorBodyLimit: a body of MaxBodyBytes goes through whole; one
// byte more and the read fails with ErrBodyTooLarge, noted for forward's
// 413, having passed on no byte past the limit; no limit passes anything.
func TestVisitorBodyLimit(t *testing.T) {
	for _, tc := range []struct {
		size, max int64
		over      bool
	}{
		{100, 0, false}, {100, 100, false}, {100, 99, true}, {1 << 20, 1000, true}, {0, 1, false},
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(strings.Repeat("x", int(tc.size)))
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			b := &visitorBody{r: r, limit: tc.max}
			got, err := io.ReadAll(b)
			if tc.over {
				if !errors.Is(err, fasthttp.ErrBodyTooLarge) || !errors.Is(b.err, fasthttp.ErrBodyTooLarge) {
					t.Fatalf("size %d max %d: err %v (noted %v), want ErrBodyTooLarge", tc.size, tc.max, err, b.err)
				}
				if int64(len(got)) > tc.max {
					t.Fatalf("size %d max %d: %d bytes passed", tc.size, tc.max, len(got))
				}
				// Read again after the failure: still the error, no byte.
				if n, err := b.Read(make([]byte, 10)); n != 0 || !errors.Is(err, fasthttp.ErrBodyTooLarge) {
					t.Fatalf("read after the limit: %d, %v", n, err)
				}
				continue
			}
			if err != nil || int64(len(got)) != tc.size || b.err != nil {
				t.Fatalf("size %d max %d: %d bytes, %v (noted %v)", tc.size, tc.max, len(got), err, b.err)
			}
		}
	}
}
