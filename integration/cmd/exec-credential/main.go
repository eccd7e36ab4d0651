// Command exec-credential is the smallest client-go exec credential plugin, for tests
// that prove a command works with every credential kind a kubeconfig may name (GKE,
// EKS and AKS logins are such plugins): it prints an ExecCredential holding the token
// read from the file given as its first argument, and appends a line to the file given
// as its second, so a test can see that it ran.
//
//	users:
//	- name: u
//	  user:
//	    exec:
//	      apiVersion: client.authentication.k8s.io/v1
//	      command: /path/to/exec-credential
//	      args: [/path/to/token, /path/to/calls]
//	      interactiveMode: Never
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "exec-credential:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: exec-credential TOKEN_FILE CALLS_FILE")
	}
	token, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	calls, err := os.OpenFile(args[1], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer calls.Close()
	if _, err := fmt.Fprintln(calls, "called"); err != nil {
		return err
	}
	cred := clientauthv1.ExecCredential{
		TypeMeta: metav1.TypeMeta{APIVersion: clientauthv1.SchemeGroupVersion.String(), Kind: "ExecCredential"},
		Status:   &clientauthv1.ExecCredentialStatus{Token: strings.TrimSpace(string(token))},
	}
	return json.NewEncoder(os.Stdout).Encode(cred)
}
