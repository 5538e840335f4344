package rules

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func mkExec(open, close string) func(r Runner) Backend {
	return func(r Runner) Backend {
		b, err := NewExec(r, open, close)
		if err != nil {
			panic(err)
		}
		return b
	}
}

func TestExecArgv(t *testing.T) {
	mk := mkExec(`/usr/local/sbin/fw-open %IP% %PROTO% %PORT% %MINUTES%`, `/usr/local/sbin/fw-close --rule "knock %IP%:%PORT%/%PROTO%"`)
	runOpCases(t, mk, []opCase{
		{name: "setup runs nothing", op: setup},
		{name: "teardown runs nothing", op: teardown},
		{
			name: "open ipv4 with minutes rounded up",
			op:   open(v4),
			want: []string{"/usr/local/sbin/fw-open 198.51.100.7 tcp 22 2"},
		},
		{
			name: "open ipv6 without limit is 0 minutes",
			op:   open(Opening{Addr: v6.Addr, Proto: "udp", Port: 500}),
			want: []string{"/usr/local/sbin/fw-open 2001:db8::7 udp 500 0"},
		},
		{
			name: "open again runs the template again",
			op: func(ctx context.Context, b Backend) error {
				_ = b.Open(ctx, v4)
				return b.Open(ctx, v4)
			},
			want: []string{"/usr/local/sbin/fw-open 198.51.100.7 tcp 22 2", "/usr/local/sbin/fw-open 198.51.100.7 tcp 22 2"},
		},
		{
			name: "close substitutes inside one argument",
			op:   closeOp(v4),
			want: []string{"/usr/local/sbin/fw-close --rule 'knock 198.51.100.7:22/tcp'"},
		},
		{
			name: "a failing command is an error with its exit status",
			script: func(f *FakeRunner) {
				f.Fail("/usr/local/sbin/fw-close --rule 'knock 198.51.100.7:53/udp'", 3, "no such rule")
			},
			op:      closeOp(v4u),
			want:    []string{"/usr/local/sbin/fw-close --rule 'knock 198.51.100.7:53/udp'"},
			wantErr: errAny,
		},
		{
			name:    "an invalid opening never reaches the command",
			op:      open(Opening{Addr: v4.Addr, Proto: "tcp;reboot", Port: 22}),
			wantErr: errAny,
		},
	})
	t.Run("list is not supported", func(t *testing.T) {
		_, err := mk(new(FakeRunner)).List(context.Background())
		if !errors.Is(err, ErrNotSupported) {
			t.Fatalf("List error = %v, want ErrNotSupported", err)
		}
	})
}

func TestExecTemplateIsNeverShell(t *testing.T) {
	// A template that looks like shell stays literal arguments.
	f := new(FakeRunner)
	b, err := NewExec(f, `/bin/fw $(id) ';' %IP% "a b" 'c %PORT% d' x%PROTO%y`, "/bin/fw-close %IP%")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Open(context.Background(), v4); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"/bin/fw", "$(id)", ";", "198.51.100.7", "a b", "c 22 d", "xtcpy"}}
	if got := f.Argvs(); !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Fatalf("argv %q, want %q", got, want)
	}
}

func TestNewExecValidation(t *testing.T) {
	for _, tc := range []struct {
		name, open, close, wantMsg string
	}{
		{"no open", "", "/bin/true", "no open template"},
		{"no close", "/bin/true", "  ", "no close template"},
		{"unterminated quote", `/bin/fw "%IP%`, "/bin/true", "unterminated"},
		{"placeholder as command", "%IP% x", "/bin/true", "command name"},
		{"unknown placeholder", "/bin/fw %ADDR%", "/bin/true", "unknown placeholder %ADDR%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewExec(new(FakeRunner), tc.open, tc.close)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("NewExec error = %v, want one saying %q", err, tc.wantMsg)
			}
		})
	}
}

func TestExecCheck(t *testing.T) {
	ctx := context.Background()
	b, err := NewExec(new(FakeRunner), "true %IP%", "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check with installed commands: %v", err)
	}
	b, err = NewExec(new(FakeRunner), "/nonexistent/knock-open %IP%", "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("Check with a missing command = %v, want ErrNotFound with a hint", err)
	}
}

func TestMinutesAndSeconds(t *testing.T) {
	for _, tc := range []struct {
		d         time.Duration
		sec, mins int64
	}{
		{0, 0, 0}, {-time.Second, 0, 0}, {time.Nanosecond, 1, 1}, {time.Second, 1, 1},
		{1500 * time.Millisecond, 2, 1}, {time.Minute, 60, 1}, {61 * time.Second, 61, 2}, {254 * time.Minute, 15240, 254},
	} {
		if s, m := timeoutSeconds(tc.d), minutes(tc.d); s != tc.sec || m != tc.mins {
			t.Errorf("%v: seconds %d minutes %d, want %d %d", tc.d, s, m, tc.sec, tc.mins)
		}
	}
}
