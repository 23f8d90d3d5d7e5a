@echo off
rem Pensieve: set everything up (first run: a few minutes; afterwards: seconds) and start the app.
rem Usage: run_app.bat [pensieve up options: the serve options, e.g. --port 8080, and --ui-port 8501]
rem The set-up itself lives in scripts\bootstrap.py; this file only finds a Python to run it with.
setlocal
cd /d "%~dp0"

call :find_python
if errorlevel 1 exit /b 1
%PYTHON% scripts\bootstrap.py
if errorlevel 1 exit /b 1

rem Server and Streamlit UI together in this window: "pensieve up" starts the UI as a child process
rem (its output goes to logs\ui.log), prints both URLs, then runs the server; Ctrl+C stops both.
rem UI alone: run_streamlit.bat; server alone: run_local_api.bat.
".venv\Scripts\python.exe" -m pensieve up %*
exit /b %ERRORLEVEL%

rem First Python 3.10+ that runs: the py launcher (newest tested version first), then python on PATH.
rem The same finder is in run_app.bat, run_local_api.bat, run_streamlit.bat and run_tests.bat: keep them in step.
:find_python
set "PYTHON="
for %%C in ("py -3.13" "py -3.12" "py -3.11" "py -3.10" "py -3" "python") do (
    if not defined PYTHON (
        %%~C -c "import sys; sys.exit(sys.version_info < (3, 10))" >nul 2>&1 && set "PYTHON=%%~C"
    )
)
if defined PYTHON exit /b 0
echo error: Pensieve needs Python 3.10 or newer, and none was found ^(tried py -3 and python^). 1>&2
python --version >nul 2>&1
if not errorlevel 1 (
    echo        This python on PATH is too old: 1>&2
    python --version 1>&2
)
echo        Install it from https://www.python.org/downloads/ and tick "Add python.exe to PATH", 1>&2
echo        then open a new terminal and run this again. 1>&2
exit /b 1
