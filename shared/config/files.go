package config

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CheckFiles checks, on this host, the files the health checks name: an
// https check's ca_file must be readable and hold PEM certificates, an
// exec check's command must be an executable regular file that only its
// owner may change (lbd runs it as root with lbd's capabilities, so whoever
// can write it could run code as lbd). It is lbd's check, not the schema's:
// hostprep reads the same file on backends, which lack these files. The
// errors point at the service's check: line. balancer.notify's command is
// held to the rules of an exec check's.
func (c *Config) CheckFiles() error {
	var errs Errors
	for i := range c.Services {
		s := &c.Services[i]
		line := s.checkLine
		if line == 0 {
			line = s.Line
		}
		add := func(field, format string, args ...any) {
			errs = append(errs, &Error{File: c.File, Line: line, Path: fmt.Sprintf("services[%d].check.%s", i, field), Msg: fmt.Sprintf(format, args...)})
		}
		switch {
		case s.Check.CAFile != "":
			if err := checkCAFile(s.Check.CAFile); err != nil {
				add("ca_file", "%v", err)
			}
		case s.Check.Command != "":
			if err := checkCommand(s.Check.Command); err != nil {
				add("command", "%v", err)
			}
		}
	}
	if n := c.Balancer.Notify; n != nil && n.Command != "" {
		// The hook runs as root like an exec check: the same rules.
		if err := checkCommand(n.Command); err != nil {
			errs = append(errs, &Error{File: c.File, Line: c.balancerLine, Path: "balancer.notify.command", Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// LoadCAFile reads a PEM file of CA certificates into a pool.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path)
	}
	return pool, nil
}

func checkCAFile(path string) error {
	_, err := LoadCAFile(path)
	return err
}

func checkCommand(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("the check command cannot be run: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file; give the program to run", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable: chmod +x it (or give the interpreter as command and the script in args)", path)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by group or others (mode %s), who could then run code as lbd: chmod go-w it", path, fi.Mode().Perm())
	}
	return nil
}
