# frozen_string_literal: true

require "net/http"
require "socket"

module BerryMQ
  # JSON-RPC over HTTP: each request is the body of POST / (Content-Type:
  # application/json) on a keep-alive connection. Calls from several threads at once (a
  # blocking get beside a send) each take a connection of their own from a small pool.
  #
  # For interconnect the node calls back: #callback_url starts a CallbackServer (plain
  # sockets from the standard library) on 127.0.0.1 and returns its URL.
  class HttpChannel
    attr_reader :url

    # +on_close+ is accepted for the same interface as TcpChannel: HTTP keeps no lasting
    # connection whose loss could be noticed between calls.
    def initialize(url, host, port, handler:, timeout:, on_close: nil)
      @url = url
      @host = host
      @port = port
      @handler = handler
      @timeout = timeout
      @idle = []
      @lock = Mutex.new
      @next_id = 0
      @closed = false
      @server = nil
    end

    def closed?
      @closed
    end

    def callback_url
      @server ||= CallbackServer.new(@handler)
      @server.url
    end

    # Calls +method+ and returns its result (errors as in TcpChannel#call).
    def call(method, params, timeout = @timeout)
      id = @lock.synchronize { @next_id += 1 }
      reply = post({ "jsonrpc" => "2.0", "method" => method, "params" => params, "id" => id }, timeout)
      raise TransportError, "#{@url} answered #{method} with no content" if reply.nil?

      JSONRPC.result_of(reply, @url)
    end

    def close
      @closed = true
      idle = @lock.synchronize { @idle.dup.tap { @idle.clear } }
      idle.each { |http| http.finish if http.started? }
      @server&.close
    end

    private

    # POSTs one JSON value; the parsed reply, or nil for 204 No Content.
    def post(value, timeout)
      raise ConnectionClosed, "the connection to #{@url} is closed" if @closed

      text = JSONRPC.request_text(value)
      http = checkout(timeout)
      begin
        response = http.post("/", text, "Content-Type" => "application/json")
      rescue Net::ReadTimeout
        http.finish if http.started?
        raise TransportError, "#{@url} did not answer within #{http.read_timeout} s"
      rescue IOError, SystemCallError, SocketError, EOFError => e
        http.finish if http.started?
        raise ConnectionClosed, "the connection to #{@url} failed: #{e.message}"
      end
      checkin(http)
      parse(response)
    end

    def parse(response)
      return nil if response.code == "204"

      type = response["Content-Type"].to_s
      unless type.start_with?("application/json")
        raise TransportError, "#{@url} answered HTTP #{response.code}: #{response.body.to_s.strip[0, 200]}"
      end

      JSON.parse(response.body)
    rescue JSON::ParserError
      raise TransportError, "#{@url} answered text that is not JSON"
    end

    def checkout(timeout)
      http = @lock.synchronize { @idle.pop }
      unless http
        http = Net::HTTP.new(@host, @port)
        http.open_timeout = @timeout
        http.keep_alive_timeout = 20
        http.max_retries = 0
      end
      http.read_timeout = timeout + 5
      http.write_timeout = @timeout
      begin
        http.start unless http.started?
      rescue IOError, SystemCallError, SocketError, Net::OpenTimeout => e
        raise ConnectionClosed, "cannot reach #{@url}: #{e.message}"
      end
      http
    end

    def checkin(http)
      @lock.synchronize { @idle.size < 4 ? @idle.push(http) : http.finish }
    end
  end

  # A minimal HTTP/1.1 server for the node's calls back (style 01 over HTTP): POST with a
  # JSON-RPC body, answered 200 with JSON or 204; keep-alive; bodies over 1 MiB get 413.
  class CallbackServer
    MAX_BODY = 1_048_576

    attr_reader :url

    def initialize(handler, host = "127.0.0.1")
      @handler = handler
      @server = TCPServer.new(host, 0)
      @url = "http://#{host}:#{@server.addr[1]}"
      @clients = []
      @lock = Mutex.new
      @thread = Thread.new { accept }
    end

    def close
      @server.close unless @server.closed?
      @lock.synchronize { @clients.each { |c| c.close unless c.closed? } }
      @thread.join(2)
    end

    private

    def accept
      loop do
        client = @server.accept
        @lock.synchronize { @clients << client }
        Thread.new(client) { |c| serve(c) }
      end
    rescue IOError, SystemCallError
      nil
    end

    def serve(client)
      while (line = client.gets("\r\n", 8192))
        verb, = line.split(" ", 2)
        headers = read_headers(client)
        length = Integer(headers["content-length"] || "", exception: false)
        break plain(client, 405, "only POST") unless verb == "POST"
        break plain(client, 411, "Content-Length required") unless length
        break reply(client, 413, JSONRPC.error_response(JSONRPC::CODES[:too_large], nil)) if length > MAX_BODY

        client.write("HTTP/1.1 100 Continue\r\n\r\n") if headers["expect"].to_s.casecmp?("100-continue")
        body = client.read(length).to_s
        answer = answer_of(body)
        answer ? reply(client, 200, answer) : client.write("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        break if headers["connection"].to_s.casecmp?("close")
      end
    rescue IOError, SystemCallError
      nil
    ensure
      client.close unless client.closed?
      @lock.synchronize { @clients.delete(client) }
    end

    def read_headers(client)
      headers = {}
      while (line = client.gets("\r\n", 8192)) && line != "\r\n"
        key, value = line.split(":", 2)
        headers[key.strip.downcase] = value.to_s.strip if value
      end
      headers
    end

    def answer_of(body)
      JSONRPC.answer(JSON.parse(body.force_encoding(Encoding::UTF_8)), @handler)
    rescue JSON::ParserError
      JSONRPC.error_response(JSONRPC::CODES[:parse_error], nil)
    end

    def reply(client, status, value)
      body = JSONRPC.dump(value)
      client.write("HTTP/1.1 #{status} #{status == 200 ? 'OK' : 'Error'}\r\nContent-Type: application/json\r\n" \
                   "Content-Length: #{body.bytesize}\r\n\r\n#{body}")
    end

    def plain(client, status, text)
      client.write("HTTP/1.1 #{status} Error\r\nContent-Type: text/plain\r\nContent-Length: #{text.bytesize}\r\n" \
                   "Connection: close\r\n\r\n#{text}")
    end
  end
end
