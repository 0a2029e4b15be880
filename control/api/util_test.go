package api_test

import "os"

func osStat(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	return st.Mode().Perm().String(), nil
}
