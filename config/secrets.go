package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/knockdaemon/knock/cipher"
)

// SecretError is a user's key or passphrase file that cannot be used. Hint
// says how to fix it when that is known.
type SecretError struct {
	User string
	Path string
	Err  error
	Hint string
}

func (e *SecretError) Error() string {
	return fmt.Sprintf("user %q: %v", e.User, e.Err)
}

func (e *SecretError) Unwrap() error { return e.Err }

// LoadKeys reads every user's secret, in user order, as cipher keys named
// after the users. A key or passphrase file that group or others may
// access is refused: whoever reads it can open the firewall. Every user is
// tried, and every problem is returned, joined.
func (c *Config) LoadKeys() ([]cipher.Key, error) {
	keys := make([]cipher.Key, 0, len(c.Users))
	var errs []error
	for i := range c.Users {
		k, err := c.Users[i].LoadKey()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	if len(errs) > 0 {
		for i := range keys {
			clear(keys[i].Secret[:])
		}
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// LoadKey reads the user's secret from its key file or passphrase file.
func (u *User) LoadKey() (cipher.Key, error) {
	mode, err := cipher.ParseMode(u.Mode)
	if err != nil {
		return cipher.Key{}, &SecretError{User: u.Name, Err: err}
	}
	path, load := u.KeyFile, cipher.LoadKeyFile
	what := "key file"
	if path == "" {
		path, load = u.PassphraseFile, cipher.LoadPassphraseFile
		what = "passphrase file"
	}
	if err := cipher.CheckKeyFilePerm(path); err != nil {
		se := &SecretError{User: u.Name, Path: path, Err: err}
		var insecure *cipher.InsecureKeyFileError
		switch {
		case errors.As(err, &insecure):
			se.Err = fmt.Errorf("%s %s has mode %04o: group and others must have no access", what, path, insecure.Mode.Perm())
			se.Hint = "chmod 600 " + path
		case errors.Is(err, fs.ErrNotExist):
			se.Err = fmt.Errorf("%s %s does not exist", what, path)
			if what == "key file" {
				se.Hint = "create one with: knockdaemon keygen " + path
			}
		case errors.Is(err, fs.ErrPermission):
			se.Err = fmt.Errorf("%s %s: permission denied", what, path)
			se.Hint = "run knockdaemon as the file's owner (normally root)"
		}
		return cipher.Key{}, se
	}
	secret, err := load(path)
	if err != nil {
		return cipher.Key{}, &SecretError{User: u.Name, Path: path, Err: err}
	}
	if secret == ([cipher.SecretSize]byte{}) {
		return cipher.Key{}, &SecretError{User: u.Name, Path: path, Err: fmt.Errorf("%s %s holds an all-zero key", what, path),
			Hint: "generate a real key with: knockdaemon keygen FILE"}
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		// Changed between the check and the read.
		return cipher.Key{}, &SecretError{User: u.Name, Path: path, Err: fmt.Errorf("%s %s changed mode while being read", what, path)}
	}
	return cipher.Key{Name: u.Name, Secret: secret, Mode: mode}, nil
}
